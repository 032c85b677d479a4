-- One row per document that was ever given a data key.
--
-- GenerateDataKey inserts it in the transaction that stores the wraps, so two concurrent
-- calls for one document cannot both succeed (the second meets the primary key). Rewrap and
-- Shred lock it FOR UPDATE, so adding a wrap and shredding the document are serialised, and
-- shred_time (set when the document's last live wrap is shredded) is re-checked under the lock.
CREATE TABLE data_keys (
    document_id  text PRIMARY KEY,
    create_time  timestamptz NOT NULL DEFAULT now(),
    shred_time   timestamptz
);

-- Every document already known: from its live wraps and its shred tombstones. A document with
-- no live wrap left was wholly shredded, at its last tombstone's time. The creation time of a
-- document whose wraps are all gone is unknown; its first tombstone's time stands in for it.
INSERT INTO data_keys (document_id, create_time, shred_time)
SELECT d.document_id,
       COALESCE(w.first_wrap, s.first_shred),
       CASE WHEN w.first_wrap IS NULL THEN s.last_shred END
FROM (SELECT document_id FROM wraps UNION SELECT document_id FROM shredded_wraps) AS d
LEFT JOIN (
    SELECT document_id, min(create_time) AS first_wrap FROM wraps GROUP BY document_id
) AS w ON w.document_id = d.document_id
LEFT JOIN (
    SELECT document_id, min(shred_time) AS first_shred, max(shred_time) AS last_shred
    FROM shredded_wraps GROUP BY document_id
) AS s ON s.document_id = d.document_id;

-- No wrap or tombstone without its document row from now on.
ALTER TABLE wraps
    ADD CONSTRAINT wraps_document_fk FOREIGN KEY (document_id) REFERENCES data_keys (document_id);
ALTER TABLE shredded_wraps
    ADD CONSTRAINT shredded_wraps_document_fk
    FOREIGN KEY (document_id) REFERENCES data_keys (document_id);
