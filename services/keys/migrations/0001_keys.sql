-- The keys service's tables.
--
-- wraps: one row per (document, recipient organisation): the document's data key encrypted
-- under the organisation's key-encryption key, with the document and organisation as the
-- derivation context. Used by both backends. Deleting a row is the crypto-shred.
CREATE TABLE wraps (
    document_id      text NOT NULL,
    organization_id  text NOT NULL,
    key_version      integer NOT NULL CHECK (key_version >= 1),
    ciphertext       text NOT NULL,
    create_time      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, organization_id)
);
CREATE INDEX wraps_by_organization_version ON wraps (organization_id, key_version);

-- What was shredded and when, so a later request is told "shredded", not "never existed",
-- and a shredded document id is never given a fresh key.
CREATE TABLE shredded_wraps (
    document_id      text NOT NULL,
    organization_id  text NOT NULL,
    shred_time       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, organization_id)
);

-- The local backend's named keys (unused with Vault): Vault Transit's model on PostgreSQL.
CREATE TABLE transit_keys (
    name                    text PRIMARY KEY,
    key_type                text NOT NULL CHECK (key_type IN ('aes256-gcm96', 'ecdsa-p256')),
    latest_version          integer NOT NULL DEFAULT 1 CHECK (latest_version >= 1),
    min_decryption_version  integer NOT NULL DEFAULT 1,
    create_time             timestamptz NOT NULL DEFAULT now(),
    CHECK (min_decryption_version BETWEEN 1 AND latest_version)
);

-- Each version's key material, sealed with AES-256-GCM under the master key file
-- (associated data: key name and version, so sealed material cannot be swapped between rows).
CREATE TABLE transit_key_versions (
    name             text NOT NULL REFERENCES transit_keys (name),
    version          integer NOT NULL CHECK (version >= 1),
    sealed_material  bytea NOT NULL,
    create_time      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
