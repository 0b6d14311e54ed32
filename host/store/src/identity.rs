//! Users, groups, memberships and personal access tokens (`migrations/*/0007_identity.sql`).
//! What they allow is decided in `tessera_core::identity`; credentials are made and checked
//! in `tessera-auth`. Here they are only kept.

use std::str::FromStr;

use tessera_core::identity::Role;
use tessera_core::time_fmt::{format_rfc3339, now_rfc3339};
use time::OffsetDateTime;

use crate::{Pools, Store, StoreError, WriteConn, WritePool};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    /// argon2id PHC string; `None`: no password login.
    pub password_hash: Option<String>,
    pub instance_admin: bool,
    /// Access tokens issued before this generation are revoked.
    pub token_generation: i64,
}

/// A user row as selected: name, password_hash, instance_admin, token_generation.
type UserTuple = (String, Option<String>, i64, i64);

const USER_COLS: &str = "name, password_hash, instance_admin, token_generation";

impl From<UserTuple> for UserRow {
    fn from((name, password_hash, admin, token_generation): UserTuple) -> Self {
        UserRow {
            name,
            password_hash,
            instance_admin: admin != 0,
            token_generation,
        }
    }
}

/// A stored personal access token (its digest is the key it is found by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub user: String,
    pub name: String,
    pub read_only: bool,
    pub expires_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, StoreError> {
    tessera_core::time_fmt::parse_rfc3339(s)
        .ok_or_else(|| StoreError::Corrupt(format!("stored time {s:?}")))
}

/// A token row as selected: user, name, read_only, expires_at, created_at.
type TokenTuple = (String, String, i64, Option<String>, String);

const TOKEN_COLS: &str = "user_name, name, read_only, expires_at, created_at";

fn decode_token(
    (user, name, read_only, expires_at, created_at): TokenTuple,
) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        user,
        name,
        read_only: read_only != 0,
        expires_at: expires_at.map(|t| parse_time(&t)).transpose()?,
        created_at: parse_time(&created_at)?,
    })
}

/// Users and groups share one namespace (a user's personal group bears its name).
const NAME_TAKEN: &str = "SELECT (SELECT COUNT(*) FROM identity_users WHERE name = $1) \
     + (SELECT COUNT(*) FROM identity_groups WHERE name = $1)";

fn name_taken(name: &str) -> StoreError {
    StoreError::Conflict(format!("the name {name:?} is taken by a user or a group"))
}

impl Store {
    /// How many users there are (none: a fresh instance, to be bootstrapped).
    pub async fn count_users(&self) -> Result<i64, StoreError> {
        with_pool!(self, reader, |pool| {
            Ok(
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM identity_users")
                    .fetch_one(pool)
                    .await?,
            )
        })
    }

    /// Create a user with its personal group (named after it, the user its admin), in
    /// one transaction. A name taken by a user or a group is a [`StoreError::Conflict`].
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        instance_admin: bool,
    ) -> Result<(), StoreError> {
        let now = now_rfc3339();
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let taken: i64 = sqlx::query_scalar(NAME_TAKEN)
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            if taken > 0 {
                return Err(name_taken(name));
            }
            sqlx::query(
                "INSERT INTO identity_users (name, password_hash, instance_admin, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(name)
            .bind(password_hash)
            .bind(i64::from(instance_admin))
            .bind(now.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO identity_groups (name, personal_of, created_at) VALUES ($1, $1, $2)",
            )
            .bind(name)
            .bind(now.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO identity_members (group_name, user_name, role) VALUES ($1, $1, $2)",
            )
            .bind(name)
            .bind(Role::Admin.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// A user by name.
    pub async fn user(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM identity_users WHERE name = $1");
        let row: Option<UserTuple> = with_pool!(self, reader, |pool| {
            sqlx::query_as(&sql).bind(name).fetch_optional(pool).await?
        });
        Ok(row.map(UserRow::from))
    }

    /// Create a shared group. A name taken by a user or a group is a conflict.
    pub async fn create_group(&self, name: &str) -> Result<(), StoreError> {
        let now = now_rfc3339();
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let taken: i64 = sqlx::query_scalar(NAME_TAKEN)
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            if taken > 0 {
                return Err(name_taken(name));
            }
            sqlx::query("INSERT INTO identity_groups (name, created_at) VALUES ($1, $2)")
                .bind(name)
                .bind(now.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Give `user` `role` in `group` (replacing the role it had). Either missing is a
    /// [`StoreError::NotFound`].
    pub async fn set_member(&self, group: &str, user: &str, role: Role) -> Result<(), StoreError> {
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let found: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM identity_users WHERE name = $1) \
                 * (SELECT COUNT(*) FROM identity_groups WHERE name = $2)",
            )
            .bind(user)
            .bind(group)
            .fetch_one(&mut *tx)
            .await?;
            if found == 0 {
                return Err(StoreError::NotFound(format!(
                    "no user {user:?} or no group {group:?}"
                )));
            }
            sqlx::query(
                "INSERT INTO identity_members (group_name, user_name, role) VALUES ($1, $2, $3) \
                 ON CONFLICT (group_name, user_name) DO UPDATE SET role = excluded.role",
            )
            .bind(group)
            .bind(user)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Take `user` out of `group`; whether it was a member.
    pub async fn remove_member(&self, group: &str, user: &str) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(
                "DELETE FROM identity_members WHERE group_name = $1 AND user_name = $2",
            )
            .bind(group)
            .bind(user)
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// The groups `user` belongs to, with its role in each, by group name.
    pub async fn memberships(&self, user: &str) -> Result<Vec<(String, Role)>, StoreError> {
        self.member_rows("group_name", "user_name", user).await
    }

    /// Membership rows with `key = value`, as (`name` column, role), by name.
    async fn member_rows(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<Vec<(String, Role)>, StoreError> {
        // Column names are constants of ours, never input.
        let sql =
            format!("SELECT {name}, role FROM identity_members WHERE {key} = $1 ORDER BY {name}");
        let rows: Vec<(String, String)> = with_pool!(self, reader, |pool| {
            sqlx::query_as(&sql).bind(value).fetch_all(pool).await?
        });
        rows.into_iter()
            .map(|(other, role)| {
                let role = Role::from_str(&role)
                    .map_err(|e| StoreError::Corrupt(format!("{other} and {value}: {e}")))?;
                Ok((other, role))
            })
            .collect()
    }

    /// Keep a personal access token (its digest) for `user` under a name of its own
    /// (a name in use is a conflict).
    pub async fn add_token(
        &self,
        user: &str,
        name: &str,
        digest: &str,
        read_only: bool,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let expires = expires_at.map(format_rfc3339);
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let taken: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM identity_tokens WHERE user_name = $1 AND name = $2",
            )
            .bind(user)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            if taken > 0 {
                return Err(StoreError::Conflict(format!(
                    "{user} has a token named {name:?} already"
                )));
            }
            sqlx::query(
                "INSERT INTO identity_tokens \
                 (digest, user_name, name, read_only, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(digest)
            .bind(user)
            .bind(name)
            .bind(i64::from(read_only))
            .bind(expires.as_deref())
            .bind(now.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The token stored under `digest`, if any (expiry is the caller's to check).
    pub async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLS} FROM identity_tokens WHERE digest = $1");
        let row: Option<TokenTuple> = with_pool!(self, reader, |pool| {
            sqlx::query_as(&sql)
                .bind(digest)
                .fetch_optional(pool)
                .await?
        });
        row.map(decode_token).transpose()
    }

    /// `user`'s tokens, by name (never their digests).
    pub async fn tokens_of(&self, user: &str) -> Result<Vec<TokenRow>, StoreError> {
        let sql =
            format!("SELECT {TOKEN_COLS} FROM identity_tokens WHERE user_name = $1 ORDER BY name");
        let rows: Vec<TokenTuple> = with_pool!(self, reader, |pool| {
            sqlx::query_as(&sql).bind(user).fetch_all(pool).await?
        });
        rows.into_iter().map(decode_token).collect()
    }

    /// Revoke one of `user`'s tokens by name; whether there was one.
    pub async fn revoke_token(&self, user: &str, name: &str) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let done =
                sqlx::query("DELETE FROM identity_tokens WHERE user_name = $1 AND name = $2")
                    .bind(user)
                    .bind(name)
                    .execute(&mut *pool.conn().await?)
                    .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Revoke everything `user` holds at once: its personal access tokens are deleted and
    /// its token generation raised (access tokens carry the generation they were issued
    /// under). Returns the new generation; `None` for an unknown user.
    pub async fn revoke_all_tokens(&self, user: &str) -> Result<Option<i64>, StoreError> {
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let generation: Option<i64> = sqlx::query_scalar(
                "UPDATE identity_users SET token_generation = token_generation + 1 \
                 WHERE name = $1 RETURNING token_generation",
            )
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM identity_tokens WHERE user_name = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(generation)
        })
    }
}

/// A group as listed: its name and, for a personal group, the user it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub name: String,
    pub personal_of: Option<String>,
}

impl From<(String, Option<String>)> for GroupRow {
    fn from((name, personal_of): (String, Option<String>)) -> Self {
        GroupRow { name, personal_of }
    }
}

impl Store {
    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM identity_users ORDER BY name");
        let rows: Vec<UserTuple> = with_pool!(self, reader, |pool| {
            sqlx::query_as(&sql).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(UserRow::from).collect())
    }

    /// Replace `user`'s password hash (`None`: no password login) and revoke its access
    /// tokens (a new password ends the sessions the old one opened). Whether it exists.
    pub async fn set_password(
        &self,
        user: &str,
        password_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(
                "UPDATE identity_users SET password_hash = $2, \
                 token_generation = token_generation + 1 WHERE name = $1",
            )
            .bind(user)
            .bind(password_hash)
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Delete `user` with its personal group, memberships and tokens. Whether it existed.
    /// Its personal group's tasks stay (readable by instance admins).
    pub async fn delete_user(&self, user: &str) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            for sql in [
                "DELETE FROM identity_tokens WHERE user_name = $1",
                "DELETE FROM identity_members WHERE user_name = $1 \
                 OR group_name IN (SELECT name FROM identity_groups WHERE personal_of = $1)",
                "DELETE FROM identity_groups WHERE personal_of = $1",
            ] {
                sqlx::query(sql).bind(user).execute(&mut *tx).await?;
            }
            let done = sqlx::query("DELETE FROM identity_users WHERE name = $1")
                .bind(user)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Every group, by name.
    pub async fn groups(&self) -> Result<Vec<GroupRow>, StoreError> {
        let rows: Vec<(String, Option<String>)> = with_pool!(self, reader, |pool| {
            sqlx::query_as("SELECT name, personal_of FROM identity_groups ORDER BY name")
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(GroupRow::from).collect())
    }

    /// A group by name.
    pub async fn group(&self, name: &str) -> Result<Option<GroupRow>, StoreError> {
        let row: Option<(String, Option<String>)> = with_pool!(self, reader, |pool| {
            sqlx::query_as("SELECT name, personal_of FROM identity_groups WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(GroupRow::from))
    }

    /// The members of `group` with their roles, by user name.
    pub async fn members(&self, group: &str) -> Result<Vec<(String, Role)>, StoreError> {
        self.member_rows("user_name", "group_name", group).await
    }

    /// Delete a shared group and its memberships (a personal group goes with its user).
    /// Its tasks stay, readable by instance admins. Whether it existed.
    pub async fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let personal: Option<Option<String>> =
                sqlx::query_scalar("SELECT personal_of FROM identity_groups WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            match personal {
                None => return Ok(false),
                Some(Some(user)) => {
                    return Err(StoreError::Conflict(format!(
                        "{name:?} is the personal group of user {user:?}; it goes when the user does"
                    )));
                }
                Some(None) => {}
            }
            sqlx::query("DELETE FROM identity_members WHERE group_name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM identity_groups WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Give the tasks from before groups (group `""`) to `group`; how many there were.
    pub async fn adopt_ungrouped_tasks(&self, group: &str) -> Result<u64, StoreError> {
        with_pool!(self, writer, |pool| {
            let done = sqlx::query("UPDATE tasks SET group_name = $1 WHERE group_name = ''")
                .bind(group)
                .execute(&mut *pool.conn().await?)
                .await?;
            Ok(done.rows_affected())
        })
    }
}
