-- Consents belong to the organisation that recorded them, and stored resources keep only what
-- was evaluated. Written to be safe to run again (every step converges).
--
-- recorded_org: the organisation whose system recorded the consent's first version, carried to
-- every version; NULL when an administrator or the gateway recorded it. Only that
-- organisation's systems (and administrators and the gateway) may add a version or revoke.
ALTER TABLE consents ADD COLUMN IF NOT EXISTS recorded_org text;

-- Existing consents: the organisation of the system that recorded version 1, read from its
-- SPIFFE URI (spiffe://<trust domain>/org/<organisation>/system/<name>).
UPDATE consents AS c
SET recorded_org = substring(first.recorded_by FROM '^spiffe://[^/]+/org/([^/]+)/system/[^/]+$')
FROM consents AS first
WHERE first.id = c.id AND first.version = 1 AND c.recorded_org IS NULL;

-- Resources recorded before the allowlist (services/consent/stored_resource.py) could hold the
-- patient's name or identifiers in extensions, display, text, identifiers and the like. Each
-- is rebuilt the way the service now builds it: codings of scope, category and policyRule
-- (system and code), dateTime, the patient's blind index, and the provision written back from
-- the rules' form (`provision`), the model's exclusive period end minus one second.
CREATE FUNCTION consent_0002_concept(concept jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN codings IS NULL THEN NULL ELSE jsonb_build_object('coding', codings) END
    FROM (
        SELECT jsonb_agg(
            jsonb_build_object('system', c -> 'system', 'code', c -> 'code') ORDER BY n
        ) AS codings
        FROM jsonb_array_elements(
            CASE WHEN jsonb_typeof(concept -> 'coding') = 'array'
                 THEN concept -> 'coding' ELSE '[]'::jsonb END
        ) WITH ORDINALITY AS t(c, n)
        WHERE jsonb_typeof(c -> 'system') = 'string' AND jsonb_typeof(c -> 'code') = 'string'
    ) AS kept
$$;

CREATE FUNCTION consent_0002_instant(instant timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(instant AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

CREATE FUNCTION consent_0002_provision(p jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    result jsonb := jsonb_build_object('type', p -> 'type');
    period jsonb := '{}'::jsonb;
BEGIN
    IF jsonb_typeof(p -> 'period') = 'array' THEN
        IF jsonb_typeof(p -> 'period' -> 0) = 'string' THEN
            period := period || jsonb_build_object(
                'start', consent_0002_instant((p -> 'period' ->> 0)::timestamptz));
        END IF;
        IF jsonb_typeof(p -> 'period' -> 1) = 'string' THEN
            period := period || jsonb_build_object(
                'end', consent_0002_instant(
                    date_trunc('second', (p -> 'period' ->> 1)::timestamptz)
                    - interval '1 second'));
        END IF;
        IF period <> '{}'::jsonb THEN
            result := result || jsonb_build_object('period', period);
        END IF;
    END IF;
    IF jsonb_typeof(p -> 'actors') = 'array' THEN
        result := result || jsonb_build_object('actor', (
            SELECT jsonb_agg(jsonb_build_object(
                'role', jsonb_build_object('coding', jsonb_build_array(jsonb_build_object(
                    'system', 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType',
                    'code', 'IRCP'))),
                'reference', jsonb_build_object('reference', (a ->> 0) || '/' || (a ->> 1))
            ) ORDER BY n)
            FROM jsonb_array_elements(p -> 'actors') WITH ORDINALITY AS t(a, n)));
    END IF;
    IF jsonb_typeof(p -> 'purposes') = 'array' THEN
        result := result || jsonb_build_object('purpose', (
            SELECT jsonb_agg(jsonb_build_object(
                'system', 'http://terminology.hl7.org/CodeSystem/v3-ActReason', 'code', code
            ) ORDER BY n)
            FROM jsonb_array_elements_text(p -> 'purposes') WITH ORDINALITY AS t(code, n)));
    END IF;
    IF jsonb_typeof(p -> 'classes') = 'array' THEN
        result := result || jsonb_build_object('securityLabel', (
            SELECT jsonb_agg(jsonb_build_object(
                'system', CASE WHEN code IN ('U', 'L', 'M', 'N', 'R', 'V')
                    THEN 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality'
                    ELSE 'http://terminology.hl7.org/CodeSystem/v3-ActCode' END,
                'code', code
            ) ORDER BY n)
            FROM jsonb_array_elements_text(p -> 'classes') WITH ORDINALITY AS t(code, n)));
    END IF;
    IF jsonb_typeof(p -> 'provisions') = 'array' THEN
        result := result || jsonb_build_object('provision', (
            SELECT jsonb_agg(consent_0002_provision(child) ORDER BY n)
            FROM jsonb_array_elements(p -> 'provisions') WITH ORDINALITY AS t(child, n)));
    END IF;
    RETURN result;
END
$$;

UPDATE consents SET resource = jsonb_strip_nulls(jsonb_build_object(
    'resourceType', 'Consent',
    'id', id,
    'meta', jsonb_build_object('versionId', version::text),
    'status', status,
    'scope', consent_0002_concept(resource -> 'scope'),
    'category', (
        SELECT jsonb_agg(consent_0002_concept(concept) ORDER BY n)
        FROM jsonb_array_elements(
            CASE WHEN jsonb_typeof(resource -> 'category') = 'array'
                 THEN resource -> 'category' ELSE '[]'::jsonb END
        ) WITH ORDINALITY AS t(concept, n)
        WHERE consent_0002_concept(concept) IS NOT NULL
    ),
    'dateTime', CASE
        WHEN resource ->> 'dateTime'
            ~ '^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?)?)?$'
        THEN resource -> 'dateTime' END,
    'policyRule', consent_0002_concept(resource -> 'policyRule'),
    'patient', jsonb_build_object('identifier', jsonb_build_object(
        'system', 'urn:medrelay:blind-index:patient', 'value', patient_index)),
    'provision', consent_0002_provision(provision)
));

DROP FUNCTION consent_0002_provision(jsonb);
DROP FUNCTION consent_0002_instant(timestamptz);
DROP FUNCTION consent_0002_concept(jsonb);
