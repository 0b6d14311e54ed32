//! Who is asking, and what they may do: the rules every API applies, decided here once.
//!
//! Everything a user can see belongs to exactly one group. A member holds one role per
//! group: [`Role::Read`] sees, [`Role::Write`] also submits and cancels, [`Role::Admin`]
//! also manages the group's members, plugin bindings and secrets. An instance admin may
//! do everything everywhere. Across groups nothing is visible: an object of a group the
//! caller may not read is answered as if it did not exist (404, never 403), so its
//! existence leaks nothing; [`Principal::sees`] is that test. A token may be read-only,
//! which caps every role it carries at Read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A member's role in one group; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// See the group's objects.
    Read,
    /// Also submit and cancel.
    Write,
    /// Also manage members, plugin bindings and secrets.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s.to_ascii_lowercase().as_str() {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (expected read, write or admin)"
            )),
        }
    }
}

/// A group's limits, set by instance admins; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Tasks waiting in the queue; a create beyond it is refused (429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u32>,
    /// Tasks started and not yet ended; beyond it tasks wait in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// CPU cores asked for by the started tasks together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu_cores: Option<u32>,
    /// Memory asked for by the started tasks together, in GB (the unit of TES
    /// `ram_gb`, converted by [`crate::units`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ram_gb: Option<f64>,
}

/// What a group's started tasks hold now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub running: u32,
    pub cpu_cores: u64,
    pub ram_bytes: u64,
}

impl Usage {
    /// The usage with one more task asking for `cpu_cores` and `ram_bytes`.
    pub fn plus(self, cpu_cores: u32, ram_bytes: u64) -> Usage {
        Usage {
            running: self.running.saturating_add(1),
            cpu_cores: self.cpu_cores.saturating_add(u64::from(cpu_cores)),
            ram_bytes: self.ram_bytes.saturating_add(ram_bytes),
        }
    }
}

impl Quota {
    /// Whether any limit applies to started tasks.
    pub fn limits_running(&self) -> bool {
        self.max_running.is_some() || self.max_cpu_cores.is_some() || self.max_ram_gb.is_some()
    }

    /// Why a task of `group` asking for `cpu_cores` and `ram_bytes` may not start while
    /// the group holds `usage`; `None` when it may.
    pub fn blocks_start(
        &self,
        group: &str,
        usage: Usage,
        cpu_cores: u32,
        ram_bytes: u64,
    ) -> Option<String> {
        let after = usage.plus(cpu_cores, ram_bytes);
        if let Some(max) = self.max_running.filter(|m| after.running > *m) {
            return Some(format!(
                "group {group} has reached its limit of {max} running tasks"
            ));
        }
        if let Some(max) = self
            .max_cpu_cores
            .filter(|m| after.cpu_cores > u64::from(*m))
        {
            return Some(format!(
                "group {group} would exceed its limit of {max} CPU cores in use"
            ));
        }
        if let Some(max) = self
            .max_ram_gb
            .filter(|m| after.ram_bytes > crate::units::gb_to_bytes(*m))
        {
            return Some(format!(
                "group {group} would exceed its limit of {max} GB of memory in use"
            ));
        }
        None
    }
}

/// The group a bucket of the object store belongs to: the group of the same name (one
/// bucket per group, named after it). Instance admins use every bucket.
pub fn bucket_group(bucket: &str) -> &str {
    bucket
}

/// Whether `p` may have a task read (`writes` false) or write `url`. The server's
/// allowed directories belong to no group, so `file://` is for instance admins; an
/// `s3://` bucket needs Read (inputs) or Write (outputs) in its group; other schemes
/// (http, https, plugin filers with their own grants) are not owned by groups.
pub fn check_storage_url(p: &Principal, url: &str, writes: bool) -> Result<(), String> {
    if p.is_instance_admin() {
        return Ok(());
    }
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    if scheme.eq_ignore_ascii_case("file") || url.starts_with('/') {
        return Err(format!(
            "{url}: file:// URLs are for instance administrators' tasks (the server's \
             directories belong to no group); use s3://{}/… instead",
            p.default_group
        ));
    }
    if scheme.eq_ignore_ascii_case("s3") {
        let bucket = url[5..].split('/').next().unwrap_or_default();
        let needed = if writes { Role::Write } else { Role::Read };
        if !p.may(needed, bucket_group(bucket)) {
            return Err(format!(
                "{url}: bucket {bucket:?} belongs to group {bucket:?}, where you need the {} \
                 role; your own bucket is s3://{}/",
                needed.as_str(),
                p.default_group
            ));
        }
    }
    Ok(())
}

/// Longest user, group or token name.
pub const MAX_NAME_CHARS: usize = 64;
/// [`check_name`] as a pattern, for the OpenAPI document (its `#[schema(pattern)]`
/// attributes spell it out; a test holds them to this).
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";

/// The one rule for user, group and token names: 1 to 64 characters of lowercase ASCII
/// letters, digits, `.`, `_` and `-`, starting with a letter or a digit (so a name is safe
/// in a URL path, a log line and a tag value as it is).
pub fn check_name(name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("a name must not be empty".into());
    };
    if name.len() > MAX_NAME_CHARS {
        return Err(format!(
            "{name:?} is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if !first.is_ascii_lowercase() && !first.is_ascii_digit() {
        return Err(format!(
            "{name:?} must start with a lowercase letter or a digit"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?} holds {c:?}; use lowercase letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The caller of a request, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub username: String,
    /// Above every group.
    pub instance_admin: bool,
    /// The caller's role in each group it belongs to.
    pub roles: BTreeMap<String, Role>,
    /// Where its TES tasks go when they name no group (its personal group).
    pub default_group: String,
    /// A read-only token: every role counts as Read, and instance admin rights are off.
    pub read_only: bool,
}

impl Principal {
    /// The caller's effective role in `group`, if any.
    pub fn role_in(&self, group: &str) -> Option<Role> {
        let role = if self.instance_admin {
            Some(Role::Admin)
        } else {
            self.roles.get(group).copied()
        };
        role.map(|r| if self.read_only { Role::Read } else { r })
    }

    /// Whether the caller may do what `needed` allows in `group`.
    pub fn may(&self, needed: Role, group: &str) -> bool {
        self.role_in(group).is_some_and(|r| r >= needed)
    }

    /// Whether objects of `group` exist for the caller at all. Everything else is
    /// answered as not found.
    pub fn sees(&self, group: &str) -> bool {
        self.may(Role::Read, group)
    }

    /// Whether the caller may act for the whole instance (install plugins, manage users).
    pub fn is_instance_admin(&self) -> bool {
        self.instance_admin && !self.read_only
    }

    /// The groups whose objects the caller sees; `None`: all of them (an instance admin).
    pub fn visible_groups(&self) -> Option<Vec<&str>> {
        if self.instance_admin {
            return None;
        }
        Some(self.roles.keys().map(String::as_str).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(roles: &[(&str, Role)]) -> Principal {
        Principal {
            username: "ada".into(),
            instance_admin: false,
            roles: roles.iter().map(|(g, r)| (g.to_string(), *r)).collect(),
            default_group: "ada".into(),
            read_only: false,
        }
    }

    #[test]
    fn each_role_includes_the_ones_before_it() {
        let p = member(&[
            ("lab", Role::Write),
            ("ops", Role::Read),
            ("ada", Role::Admin),
        ]);
        assert!(p.may(Role::Read, "lab") && p.may(Role::Write, "lab"));
        assert!(!p.may(Role::Admin, "lab"));
        assert!(p.may(Role::Read, "ops") && !p.may(Role::Write, "ops"));
        assert!(p.may(Role::Admin, "ada"));
        assert!(!p.is_instance_admin());
    }

    #[test]
    fn other_groups_do_not_exist_for_a_member() {
        let p = member(&[("lab", Role::Admin)]);
        assert!(p.sees("lab"));
        assert!(!p.sees("other"));
        assert!(!p.may(Role::Read, "other"));
        assert_eq!(p.visible_groups(), Some(vec!["lab"]));
    }

    #[test]
    fn an_instance_admin_sees_and_does_everything_unless_read_only() {
        let mut p = member(&[]);
        p.instance_admin = true;
        assert!(p.may(Role::Admin, "anything") && p.is_instance_admin());
        assert_eq!(p.visible_groups(), None);
        p.read_only = true;
        assert!(p.sees("anything"));
        assert!(!p.may(Role::Write, "anything"));
        assert!(!p.is_instance_admin());
    }

    #[test]
    fn a_read_only_token_caps_every_role_at_read() {
        let mut p = member(&[("lab", Role::Admin)]);
        p.read_only = true;
        assert_eq!(p.role_in("lab"), Some(Role::Read));
        assert!(!p.may(Role::Write, "lab"));
    }

    #[test]
    fn a_quota_blocks_the_start_that_would_pass_a_limit() {
        let q = Quota {
            max_running: Some(2),
            max_cpu_cores: Some(4),
            max_ram_gb: Some(1.0),
            ..Quota::default()
        };
        let gb = crate::units::gb_to_bytes(1.0);
        assert!(q.limits_running() && !Quota::default().limits_running());
        assert_eq!(q.blocks_start("lab", Usage::default(), 4, gb), None);
        let one = Usage::default().plus(1, 0);
        assert_eq!(q.blocks_start("lab", one, 3, gb), None);
        assert!(
            q.blocks_start("lab", one, 4, 0)
                .unwrap()
                .contains("4 CPU cores")
        );
        assert!(
            q.blocks_start("lab", one, 0, gb + 1)
                .unwrap()
                .contains("1 GB")
        );
        let two = one.plus(0, 0);
        assert!(
            q.blocks_start("lab", two, 0, 0)
                .unwrap()
                .contains("2 running tasks")
        );
        assert_eq!(
            Quota::default().blocks_start("lab", two, 99, u64::MAX / 2),
            None
        );
    }

    #[test]
    fn storage_is_the_groups_and_the_servers_directories_are_the_admins() {
        let p = member(&[("lab", Role::Read), ("ada", Role::Admin)]);
        assert_eq!(check_storage_url(&p, "s3://ada/in/x", false), Ok(()));
        assert_eq!(check_storage_url(&p, "s3://ada/out/", true), Ok(()));
        assert_eq!(check_storage_url(&p, "s3://lab/in", false), Ok(()));
        assert!(
            check_storage_url(&p, "s3://lab/out", true)
                .unwrap_err()
                .contains("write")
        );
        assert!(check_storage_url(&p, "S3://other/x", false).is_err());
        assert!(check_storage_url(&p, "file:///srv/data/x", false).is_err());
        assert!(check_storage_url(&p, "/srv/data/x", false).is_err());
        assert_eq!(
            check_storage_url(&p, "https://example.org/x", false),
            Ok(())
        );
        let mut admin = member(&[]);
        admin.instance_admin = true;
        assert_eq!(
            check_storage_url(&admin, "file:///srv/data/x", true),
            Ok(())
        );
        assert_eq!(check_storage_url(&admin, "s3://other/x", true), Ok(()));
    }

    #[test]
    fn names_are_short_lowercase_and_path_safe() {
        for ok in ["ada", "lab-1", "team.ops_2", "0day"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(MAX_NAME_CHARS + 1);
        for bad in ["", "Ada", "-lab", "a/b", "a b", "é", "../x", long.as_str()] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_parse_in_any_case_and_say_what_is_expected() {
        assert_eq!("WRITE".parse::<Role>(), Ok(Role::Write));
        assert_eq!(Role::Admin.as_str().parse::<Role>(), Ok(Role::Admin));
        assert!(
            "owner"
                .parse::<Role>()
                .unwrap_err()
                .contains("read, write or admin")
        );
    }
}
