//! Query strings, and the group a request names with `?group=`: decided once for every
//! `/v1` endpoint.

use tessera_core::ErrorCode;
use tessera_core::identity::Role;

use crate::Error;
use crate::auth::Caller;

/// The query's `key=value` pairs, in order (keys may repeat).
pub(crate) fn pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, Error> {
    serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| {
        Error::new(
            ErrorCode::InvalidParameter,
            format!("could not parse the query string: {e}"),
        )
    })
}

/// The group `?group=` names, if any.
fn named(raw: Option<&str>) -> Result<Option<String>, Error> {
    Ok(pairs(raw)?
        .into_iter()
        .find(|(k, v)| k == "group" && !v.is_empty())
        .map(|(_, v)| v))
}

/// The group an object of the request lives in: `?group=`, else the caller's personal
/// group (whether the caller sees it is the handler's check: 404 as for the object).
pub(crate) fn group(caller: &Caller, raw: Option<&str>) -> Result<String, Error> {
    Ok(named(raw)?.unwrap_or_else(|| caller.default_group.clone()))
}

/// The group a new object goes to ([`group`]); the caller must be able to write there.
pub(crate) fn target_group(caller: &Caller, raw: Option<&str>) -> Result<String, Error> {
    let group = group(caller, raw)?;
    caller.check_role(Role::Write, &group, "group", &group)?;
    Ok(group)
}

/// The groups a list covers: the one `?group=` names (none if the caller does not see
/// it, as if it had nothing), else every group the caller sees (`None`: all).
pub(crate) fn listed_groups(
    caller: &Caller,
    raw: Option<&str>,
) -> Result<Option<Vec<String>>, Error> {
    Ok(match named(raw)? {
        Some(g) => Some(if caller.sees(&g) { vec![g] } else { Vec::new() }),
        None => visible_groups(caller),
    })
}

/// Every group the caller sees (`None`: all of them, an instance admin).
pub(crate) fn visible_groups(caller: &Caller) -> Option<Vec<String>> {
    caller
        .visible_groups()
        .map(|g| g.into_iter().map(str::to_string).collect())
}

/// Default and largest page of the Task and Workflow APIs' keyset listings.
pub(crate) const DEFAULT_PAGE: u32 = 100;
pub(crate) const MAX_PAGE: u32 = 1000;

/// `page_size`: 0 means the default; larger than the largest is the largest.
pub(crate) fn page_size(v: &str) -> Result<u32, Error> {
    match v.parse::<u32>() {
        Ok(0) => Ok(DEFAULT_PAGE),
        Ok(n) => Ok(n.min(MAX_PAGE)),
        Err(_) => Err(Error::new(
            ErrorCode::InvalidParameter,
            format!("page_size {v:?} is not a non-negative integer"),
        )),
    }
}

/// A `page_token` this server did not issue.
pub(crate) fn bad_token() -> Error {
    Error::new(
        ErrorCode::InvalidPageToken,
        "page_token is not one this server issued; start again without it",
    )
}
