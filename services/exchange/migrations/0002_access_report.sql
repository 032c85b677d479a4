-- The patient's access report (ListPatientAccesses): the ledger records about a patient's
-- documents, and about earlier reports on the patient, found without the ledger ever holding
-- a patient identifier or index.

-- Every ledger record about one resource, newest last: the report joins the patient's
-- documents (and reports) to the ledger by resource id. The ledger itself comes from
-- libs/medrelay/migrations/0001_audit_ledger.sql; an index changes none of its rows or hashes.
CREATE INDEX audit_ledger_resource ON audit_ledger (resource_type, resource_id, seq);

-- One row per ListPatientAccesses call: the opaque id its ledger record names (resource type
-- "Patient"), beside the patient's blind index, as documents keep it. So a report on the
-- patient lists who asked for earlier reports, while the ledger holds only the opaque id.
CREATE TABLE access_reports (
    id             text PRIMARY KEY,
    patient_index  text NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_reports_patient ON access_reports (patient_index);
