-- The tamper-evident audit ledger, installed into every service's schema (no schema names here:
-- medrelay.db.migrate sets search_path). Rows are hash-chained by medrelay.audit; the triggers
-- below make the table append-only for everyone who cannot bypass triggers, and the chain makes
-- any change by those who can (superusers, replication) detectable by medrelay.audit.verify.

CREATE TABLE audit_ledger (
    seq           bigint PRIMARY KEY CHECK (seq > 0),
    occurred_at   timestamptz NOT NULL,
    actor         text NOT NULL,
    action        text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('success', 'denied', 'error')),
    reason        text NOT NULL DEFAULT '',
    details       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    prev_hash     bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash          bytea NOT NULL CHECK (octet_length(hash) = 32)
);

-- One row: the tip of the chain. Appenders lock it (SELECT ... FOR UPDATE) inside their own
-- transaction, which serialises appends and makes seq gap-free (a sequence would leave gaps on
-- rollback, and a gap must mean tampering).
CREATE TABLE audit_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint NOT NULL CHECK (seq >= 0),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32)
);
INSERT INTO audit_head (id, seq, hash) VALUES (true, 0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION audit_ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_ledger is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit records are never changed or removed; append a new record instead';
END;
$$;

CREATE TRIGGER audit_ledger_append_only
    BEFORE UPDATE OR DELETE ON audit_ledger
    FOR EACH ROW EXECUTE FUNCTION audit_ledger_refuse_change();

CREATE TRIGGER audit_ledger_no_truncate
    BEFORE TRUNCATE ON audit_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION audit_ledger_refuse_change();

-- The head may only move forward one record at a time, and never disappear.
CREATE FUNCTION audit_head_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id AND NEW.seq = OLD.seq + 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_head only advances one record at a time: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_head_forward_only
    BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only();

CREATE TRIGGER audit_head_no_truncate
    BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_forward_only();
