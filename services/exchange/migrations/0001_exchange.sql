-- The exchange service's tables. Nothing here is readable without the keys service: content,
-- title, note and the patient identifier are sealed under the document's data key, whose
-- wraps live in the keys service; the patient appears only as a blind index (keyed HMAC).

-- A send in progress, committed before the data key is made. The send's own transaction
-- locks this row until it commits (and deletes it); a row that nobody holds belongs to a send
-- whose process died, and the sweeper shreds its data key so no orphan key outlives it.
CREATE TABLE pending_sends (
    document_id  text PRIMARY KEY,
    start_time   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id                       text PRIMARY KEY,
    -- Idempotency: one document per (sending system, client request id).
    sender_system            text NOT NULL,
    request_id               uuid NOT NULL,
    -- HMAC (keys BlindIndex) of the request as first sent, to tell a retry from a reuse.
    request_fingerprint      text NOT NULL,
    sender_practitioner_id   text NOT NULL,
    sender_organization_id   text NOT NULL,
    patient_index            text NOT NULL,
    type_system              text NOT NULL,
    type_code                text NOT NULL,
    type_display             text NOT NULL DEFAULT '',
    specialty_system         text NOT NULL DEFAULT '',
    specialty_code           text NOT NULL DEFAULT '',
    specialty_display        text NOT NULL DEFAULT '',
    content_type             text NOT NULL,
    purpose                  text NOT NULL,
    data_classes             text[] NOT NULL DEFAULT '{}',
    -- The recipients as the sender named them (ids only), for the sender's view.
    recipients               jsonb NOT NULL,
    size_bytes               bigint NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    -- The envelope (docs/envelope.md) of the sealed header: patient, title, note, SHA-256.
    sealed_header            bytea,
    -- The sender organisation's signature over the header digest (keys Sign).
    signature                bytea,
    signature_key_version    integer,
    create_time              timestamptz NOT NULL DEFAULT now(),
    expire_time              timestamptz NOT NULL,
    recall_time              timestamptz,
    recall_reason            text,
    expire_shred_time        timestamptz,
    purge_time               timestamptz,
    UNIQUE (sender_system, request_id)
);
CREATE INDEX documents_patient ON documents (patient_index);
CREATE INDEX documents_sender ON documents (sender_practitioner_id, create_time DESC);
CREATE INDEX documents_expiring ON documents (expire_time) WHERE purge_time IS NULL;

-- The encrypted content, one row per sealed chunk of at most 1 MiB + 16 bytes (index 0 holds
-- the envelope header). Behind services/exchange/content.py, which an object store could
-- implement instead.
CREATE TABLE content_chunks (
    document_id  text NOT NULL REFERENCES documents (id),
    chunk_index  integer NOT NULL CHECK (chunk_index >= 0),
    data         bytea NOT NULL,
    PRIMARY KEY (document_id, chunk_index)
);
ALTER TABLE content_chunks ALTER COLUMN data SET STORAGE EXTERNAL;  -- already encrypted

CREATE TABLE forwards (
    id                  text PRIMARY KEY,
    document_id         text NOT NULL REFERENCES documents (id),
    practitioner_id     text NOT NULL,
    organization_id     text NOT NULL,
    recipients          jsonb NOT NULL,
    -- The forwarder's note, sealed under the document's key (empty note: NULL).
    sealed_note         bytea,
    create_time         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX forwards_document ON forwards (document_id, create_time);

-- One row per resolved recipient: a practitioner in an organisation, or a whole organisation
-- (practitioner_id ''), possibly through a care team.
CREATE TABLE deliveries (
    document_id      text NOT NULL REFERENCES documents (id),
    practitioner_id  text NOT NULL,
    organization_id  text NOT NULL,
    care_team_id     text NOT NULL DEFAULT '',
    forward_id       text REFERENCES forwards (id),
    forwarded_by     text NOT NULL DEFAULT '',
    state            text NOT NULL DEFAULT 'delivered'
                     CHECK (state IN ('delivered', 'fetched', 'read', 'revoked')),
    update_time      timestamptz NOT NULL DEFAULT now(),
    notice_time      timestamptz,
    PRIMARY KEY (document_id, practitioner_id, organization_id, care_team_id)
);
CREATE INDEX deliveries_practitioner ON deliveries (practitioner_id, organization_id);
CREATE INDEX deliveries_organization ON deliveries (organization_id) WHERE practitioner_id = '';
CREATE INDEX deliveries_undelivered ON deliveries (update_time)
    WHERE state = 'delivered' AND notice_time IS NULL;

CREATE TABLE notices (
    id               text PRIMARY KEY,
    document_id      text NOT NULL REFERENCES documents (id),
    sender_practitioner_id text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('non_delivery')),
    practitioner_id  text NOT NULL,
    organization_id  text NOT NULL,
    care_team_id     text NOT NULL DEFAULT '',
    create_time      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notices_sender ON notices (sender_practitioner_id, create_time DESC, id);
