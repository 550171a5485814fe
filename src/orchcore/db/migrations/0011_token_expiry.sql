-- Tokens may carry an expiry: after it the token is refused ("token expired") like a
-- revoked one, but stays listed until it is revoked.
--
-- Deploy-safe: a nullable column without a default (no rewrite; existing tokens never
-- expire), and daemons of the previous version neither read nor write it. Such a daemon
-- would still accept an expired token: roll the daemons before handing out tokens with
-- an expiry.
ALTER TABLE api_tokens
    ADD COLUMN expires_at TIMESTAMPTZ,
    ADD CONSTRAINT api_tokens_expiry_check CHECK (expires_at IS NULL OR expires_at > created_at);
