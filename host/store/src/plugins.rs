//! Installed plugin versions (with their component bytes) and the bindings that say which
//! version serves where. The store knows nothing of WebAssembly: a manifest and binding
//! settings are JSON text to it, a component is bytes.

use sqlx::{ColumnIndex, Decode, Row, Type};
use tessera_core::plugin::World;
use tessera_core::time_fmt::now_rfc3339;

use crate::{Pools, Store, StoreError, WriteConn, WritePool};

/// Insert or replace a binding row inside a write transaction (the same SQL on both
/// backends; a macro so that each backend's concrete executor type is used).
macro_rules! upsert_binding {
    ($tx:expr, $row:expr) => {{
        let row: &BindingRow = $row;
        let (prev_plugin, prev_version) = match &row.previous {
            Some((p, v)) => (Some(p.as_str()), Some(v.as_str())),
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO plugin_bindings \
             (world, scope, plugin, version, previous_plugin, previous_version, \
              previous_settings, settings, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (world, scope) DO UPDATE SET plugin = excluded.plugin, \
             version = excluded.version, previous_plugin = excluded.previous_plugin, \
             previous_version = excluded.previous_version, \
             previous_settings = excluded.previous_settings, settings = excluded.settings, \
             updated_at = excluded.updated_at",
        )
        .bind(row.world.name())
        .bind(row.scope.as_str())
        .bind(row.plugin.as_str())
        .bind(row.version.as_str())
        .bind(prev_plugin)
        .bind(prev_version)
        .bind(row.previous_settings.as_deref())
        .bind(row.settings.as_str())
        .bind(row.updated_at.as_str())
        .execute(&mut *$tx)
        .await?;
    }};
}

/// One installed version of a plugin, without its component bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginVersionRow {
    pub name: String,
    pub version: String,
    /// The world it fills.
    pub world: World,
    /// The manifest as JSON.
    pub manifest: String,
    /// Hex SHA-256 of the component.
    pub sha256: String,
    pub size_bytes: i64,
    /// `builtin` or `uploaded`.
    pub origin: String,
    pub installed_at: String,
}

/// Which plugin version serves a scope of a world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRow {
    pub world: World,
    /// The world's key: a group for routers (`""`: every group), a URL scheme for filers,
    /// an engine for engine adapters, a binding name for notifiers.
    pub scope: String,
    pub plugin: String,
    pub version: String,
    /// What was bound before the last activation, for rollback.
    pub previous: Option<(String, String)>,
    /// The settings `previous` served with (`None` in rows from before they were kept).
    pub previous_settings: Option<String>,
    /// Settings (config, secrets, filters) as JSON.
    pub settings: String,
    pub updated_at: String,
}

impl BindingRow {
    /// The settings a rollback puts back with `previous`: those it served with; for a
    /// row from before they were kept, the current ones when it is the same plugin, else
    /// none (settings never pass from one plugin to another).
    pub fn rollback_settings(&self) -> String {
        match (&self.previous_settings, &self.previous) {
            (Some(s), _) => s.clone(),
            (None, Some((plugin, _))) if *plugin == self.plugin => self.settings.clone(),
            (None, _) => "{}".to_string(),
        }
    }
}

/// What installing a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The version is new.
    New,
    /// The same bytes were installed under this name and version already: nothing changed.
    Unchanged,
}

/// What deleting a version did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    NotFound,
    /// A binding serves this version: `(world, scope)` of each.
    InUse(Vec<(World, String)>),
}

const VERSION_COLS: &str =
    "name, version, world, manifest, sha256, size_bytes, origin, installed_at";
const BINDING_COLS: &str = "world, scope, plugin, version, previous_plugin, previous_version, \
     previous_settings, settings, updated_at";

/// A world as stored (its name); another name is a corrupt row.
fn decode_world(name: String) -> Result<World, sqlx::Error> {
    name.parse()
        .map_err(|e: tessera_core::plugin::UnknownWorld| sqlx::Error::Decode(e.into()))
}

fn decode_version<R>(row: &R) -> Result<PluginVersionRow, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(PluginVersionRow {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        world: decode_world(row.try_get("world")?)?,
        manifest: row.try_get("manifest")?,
        sha256: row.try_get("sha256")?,
        size_bytes: row.try_get("size_bytes")?,
        origin: row.try_get("origin")?,
        installed_at: row.try_get("installed_at")?,
    })
}

fn decode_binding<R>(row: &R) -> Result<BindingRow, sqlx::Error>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let previous_plugin: Option<String> = row.try_get("previous_plugin")?;
    let previous_version: Option<String> = row.try_get("previous_version")?;
    Ok(BindingRow {
        world: decode_world(row.try_get("world")?)?,
        scope: row.try_get("scope")?,
        plugin: row.try_get("plugin")?,
        version: row.try_get("version")?,
        previous: previous_plugin.zip(previous_version),
        previous_settings: row.try_get("previous_settings")?,
        settings: row.try_get("settings")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Install a plugin version with its component. Installing the same name and version
    /// again with the same bytes changes nothing; with other bytes it is refused
    /// ([`StoreError::Conflict`]): a version, once installed, always means the same code.
    pub async fn install_plugin_version(
        &self,
        row: &PluginVersionRow,
        component: &[u8],
    ) -> Result<Installed, StoreError> {
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT sha256 FROM plugin_versions WHERE name = $1 AND version = $2",
            )
            .bind(row.name.as_str())
            .bind(row.version.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                Some(sha) if sha == row.sha256 => return Ok(Installed::Unchanged),
                Some(_) => {
                    return Err(StoreError::Conflict(format!(
                        "{}@{} is installed with different bytes; give the new build a new version",
                        row.name, row.version
                    )));
                }
                None => {}
            }
            sqlx::query(
                "INSERT INTO plugin_versions \
                 (name, version, world, manifest, sha256, size_bytes, component, origin, installed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(row.name.as_str())
            .bind(row.version.as_str())
            .bind(row.world.name())
            .bind(row.manifest.as_str())
            .bind(row.sha256.as_str())
            .bind(row.size_bytes)
            .bind(component)
            .bind(row.origin.as_str())
            .bind(row.installed_at.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Installed::New)
        })
    }

    /// Every installed version, by name then installation order.
    pub async fn plugin_versions(&self) -> Result<Vec<PluginVersionRow>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLS} FROM plugin_versions ORDER BY name, installed_at, version"
        );
        with_pool!(self, reader, |pool| {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            Ok(rows.iter().map(decode_version).collect::<Result<_, _>>()?)
        })
    }

    /// One installed version, without its bytes.
    pub async fn plugin_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<PluginVersionRow>, StoreError> {
        let sql =
            format!("SELECT {VERSION_COLS} FROM plugin_versions WHERE name = $1 AND version = $2");
        with_pool!(self, reader, |pool| {
            let row = sqlx::query(&sql)
                .bind(name)
                .bind(version)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(decode_version).transpose()?)
        })
    }

    /// The component bytes of an installed version.
    pub async fn plugin_component(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT component FROM plugin_versions WHERE name = $1 AND version = $2",
            )
            .bind(name)
            .bind(version)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Delete a version no binding serves. Bindings that would roll back to it forget
    /// their rollback target.
    pub async fn delete_plugin_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Deleted, StoreError> {
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let users: Vec<(String, String)> = sqlx::query_as(
                "SELECT world, scope FROM plugin_bindings WHERE plugin = $1 AND version = $2 \
                 ORDER BY world, scope",
            )
            .bind(name)
            .bind(version)
            .fetch_all(&mut *tx)
            .await?;
            if !users.is_empty() {
                let users = users
                    .into_iter()
                    .map(|(w, scope)| Ok((decode_world(w)?, scope)))
                    .collect::<Result<_, sqlx::Error>>()?;
                return Ok(Deleted::InUse(users));
            }
            sqlx::query(
                "UPDATE plugin_bindings SET previous_plugin = NULL, previous_version = NULL, \
                 previous_settings = NULL WHERE previous_plugin = $1 AND previous_version = $2",
            )
            .bind(name)
            .bind(version)
            .execute(&mut *tx)
            .await?;
            let done = sqlx::query("DELETE FROM plugin_versions WHERE name = $1 AND version = $2")
                .bind(name)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(if done.rows_affected() == 0 {
                Deleted::NotFound
            } else {
                Deleted::Deleted
            })
        })
    }

    /// Every binding, by world and scope.
    pub async fn plugin_bindings(&self) -> Result<Vec<BindingRow>, StoreError> {
        let sql = format!("SELECT {BINDING_COLS} FROM plugin_bindings ORDER BY world, scope");
        with_pool!(self, reader, |pool| {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            Ok(rows.iter().map(decode_binding).collect::<Result<_, _>>()?)
        })
    }

    /// Make `plugin@version` serve `scope` of `world`. What served it before becomes the
    /// rollback target (unless it is the same version). `settings` replaces the binding's
    /// settings; `None` keeps them (an upgrade keeps its configuration), and a new binding
    /// without settings gets `{}`. The version must be installed and of that world.
    pub async fn bind_plugin(
        &self,
        world: World,
        scope: &str,
        plugin: &str,
        version: &str,
        settings: Option<&str>,
    ) -> Result<BindingRow, StoreError> {
        let select =
            format!("SELECT {BINDING_COLS} FROM plugin_bindings WHERE world = $1 AND scope = $2");
        let now = now_rfc3339();
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let installed: Option<String> = sqlx::query_scalar(
                "SELECT world FROM plugin_versions WHERE name = $1 AND version = $2",
            )
            .bind(plugin)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
            match installed {
                None => {
                    return Err(StoreError::NotFound(format!(
                        "plugin {plugin}@{version} is not installed"
                    )));
                }
                Some(w) if w != world.name() => {
                    return Err(StoreError::Conflict(format!(
                        "plugin {plugin}@{version} is a {w} plugin, not a {world} plugin"
                    )));
                }
                Some(_) => {}
            }
            let current = sqlx::query(&select)
                .bind(world.name())
                .bind(scope)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(decode_binding)
                .transpose()?;
            let row = match current {
                Some(cur) => {
                    let same = cur.plugin == plugin && cur.version == version;
                    let (previous, previous_settings) = if same {
                        (cur.previous.clone(), cur.previous_settings.clone())
                    } else {
                        (
                            Some((cur.plugin.clone(), cur.version.clone())),
                            Some(cur.settings.clone()),
                        )
                    };
                    BindingRow {
                        world,
                        scope: scope.into(),
                        plugin: plugin.into(),
                        version: version.into(),
                        previous,
                        previous_settings,
                        settings: settings.map_or(cur.settings, str::to_string),
                        updated_at: now,
                    }
                }
                None => BindingRow {
                    world,
                    scope: scope.into(),
                    plugin: plugin.into(),
                    version: version.into(),
                    previous: None,
                    previous_settings: None,
                    settings: settings.unwrap_or("{}").to_string(),
                    updated_at: now,
                },
            };
            upsert_binding!(tx, &row);
            tx.commit().await?;
            Ok(row)
        })
    }

    /// Swap a binding back to what served before its last activation, with the settings
    /// it served with ([`BindingRow::rollback_settings`]). `None` when the binding does
    /// not exist or has nothing to roll back to.
    pub async fn rollback_binding(
        &self,
        world: World,
        scope: &str,
    ) -> Result<Option<BindingRow>, StoreError> {
        let select =
            format!("SELECT {BINDING_COLS} FROM plugin_bindings WHERE world = $1 AND scope = $2");
        let now = now_rfc3339();
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let current = sqlx::query(&select)
                .bind(world.name())
                .bind(scope)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(decode_binding)
                .transpose()?;
            let Some(cur) = current else {
                return Ok(None);
            };
            let Some((plugin, version)) = cur.previous.clone() else {
                return Ok(None);
            };
            let row = BindingRow {
                world: cur.world,
                scope: cur.scope.clone(),
                plugin,
                version,
                settings: cur.rollback_settings(),
                previous: Some((cur.plugin, cur.version)),
                previous_settings: Some(cur.settings),
                updated_at: now,
            };
            upsert_binding!(tx, &row);
            tx.commit().await?;
            Ok(Some(row))
        })
    }

    /// Remove a binding. Returns whether it existed.
    pub async fn unbind_plugin(&self, world: World, scope: &str) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let done = sqlx::query("DELETE FROM plugin_bindings WHERE world = $1 AND scope = $2")
                .bind(world.name())
                .bind(scope)
                .execute(&mut *pool.conn().await?)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}
