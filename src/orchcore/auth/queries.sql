-- Named queries of API tokens. Only a token's SHA-256 is stored, never its secret.

-- name: insert_token
-- A token: absent → active (until $8, when it is not null: then expired).
INSERT INTO api_tokens (token_name, token_prefix, token_sha256, role, service_name,
                        created_by, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *

-- name: token_by_hash
SELECT * FROM api_tokens WHERE token_sha256 = $1

-- name: touch_token
-- An active token: last used at $2 (the caller writes at most once a minute).
UPDATE api_tokens SET last_used_at = $2 WHERE id = $1

-- name: list_tokens
-- Active tokens, and revoked ones too when $1.
SELECT * FROM api_tokens WHERE ($1::boolean OR revoked_at IS NULL) ORDER BY created_at

-- name: active_tokens_matching
-- Active tokens whose id, printed prefix or id prefix (8 characters or more) is $1.
SELECT id, token_name FROM api_tokens
WHERE revoked_at IS NULL
  AND (id::text = $1 OR token_prefix = $1 OR (length($1) >= 8 AND id::text LIKE $1 || '%'))

-- name: revoke_token
-- A token: active → revoked by $3 at $2; no row if already revoked.
UPDATE api_tokens SET revoked_at = $2, revoked_by = $3
WHERE id = $1 AND revoked_at IS NULL
RETURNING *

-- name: notify_token_revoked
-- Every process drops its cache of verified tokens when the revoking transaction commits.
SELECT pg_notify('orch', json_build_object('topic', 'token', 'op', 'revoke', 'id', $1::uuid)::text)
