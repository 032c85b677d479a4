-- A document sent as a de-identified copy (DocumentHeader.deidentify): consent is asked about
-- a de-identified copy at every read, and recipients are shown the label. Existing documents
-- are identified ones.
ALTER TABLE documents ADD COLUMN deidentified boolean NOT NULL DEFAULT false;
