-- Users, groups, memberships and personal access tokens, PostgreSQL flavour. Keep in step
-- with ../sqlite/0007_identity.sql.

CREATE TABLE identity_users (
    name             TEXT    PRIMARY KEY,
    -- argon2id PHC string; NULL: no password login (tokens or an OpenID provider only).
    password_hash    TEXT,
    instance_admin   BIGINT  NOT NULL DEFAULT 0,
    -- Raised to revoke every access token issued before (tokens carry the generation).
    token_generation BIGINT  NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL
);

CREATE TABLE identity_groups (
    name       TEXT PRIMARY KEY,
    -- The user whose personal group this is (NULL for a shared group).
    personal_of TEXT REFERENCES identity_users (name) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);

CREATE TABLE identity_members (
    group_name TEXT NOT NULL REFERENCES identity_groups (name) ON DELETE CASCADE,
    user_name  TEXT NOT NULL REFERENCES identity_users (name) ON DELETE CASCADE,
    -- read, write or admin.
    role       TEXT NOT NULL,
    PRIMARY KEY (group_name, user_name)
);

CREATE INDEX identity_members_user ON identity_members (user_name);

-- Only the SHA-256 of each token is kept.
CREATE TABLE identity_tokens (
    digest     TEXT    PRIMARY KEY,
    user_name  TEXT    NOT NULL REFERENCES identity_users (name) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    read_only  BIGINT  NOT NULL DEFAULT 0,
    -- RFC 3339 UTC; NULL: no expiry.
    expires_at TEXT,
    created_at TEXT    NOT NULL,
    UNIQUE (user_name, name)
);
