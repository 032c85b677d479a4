-- The consent service's tables. Patients appear only as blind indexes (from keys).
--
-- consents: every version of every consent; a change or a revocation adds a version, nothing
-- is rewritten. `resource` is the FHIR Consent as recorded, with the patient's identifier
-- replaced by its blind index; `provision` is the decision rules' compact form of it, so a
-- Check never re-parses FHIR.
CREATE TABLE consents (
    id             text NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    patient_index  text NOT NULL,
    status         text NOT NULL,
    resource       jsonb NOT NULL,
    provision      jsonb NOT NULL,
    recorded_by    text NOT NULL,
    record_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, version)
);
-- A Check reads the latest version of each of one patient's consents.
CREATE INDEX consents_by_patient ON consents (patient_index, id, version DESC);

-- Break-the-glass accesses, kept for review.
CREATE TABLE emergency_accesses (
    id               uuid PRIMARY KEY,
    patient_index    text NOT NULL,
    practitioner_id  text NOT NULL,
    organization_id  text NOT NULL,
    justification    text NOT NULL,
    access_time      timestamptz NOT NULL DEFAULT now(),
    review_time      timestamptz,
    review_note      text,
    reviewed_by      text
);
CREATE INDEX emergency_accesses_by_time ON emergency_accesses (access_time, id);
CREATE INDEX emergency_accesses_open ON emergency_accesses (access_time, id)
    WHERE review_time IS NULL;
