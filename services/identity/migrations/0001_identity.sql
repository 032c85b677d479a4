-- The identity service's tables. Patients appear only as blind indexes (care_teams).
CREATE TABLE organizations (
    id            text PRIMARY KEY,
    display_name  text NOT NULL,
    identifiers   jsonb NOT NULL DEFAULT '[]',
    active        boolean NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now(),
    update_time   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE systems (
    organization_id text NOT NULL REFERENCES organizations (id),
    id              text NOT NULL,
    display_name    text NOT NULL,
    spiffe_id       text NOT NULL UNIQUE,
    active          boolean NOT NULL,
    create_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);

CREATE TABLE practitioners (
    id                   text PRIMARY KEY,
    family_name          text NOT NULL,
    given_name           text NOT NULL,
    licence_registry     text NOT NULL,
    licence_number       text NOT NULL,
    licence_status       text NOT NULL DEFAULT 'unverified'
        CHECK (licence_status IN ('unverified', 'verified', 'suspended', 'revoked')),
    licence_verify_time  timestamptz,
    active               boolean NOT NULL,
    create_time          timestamptz NOT NULL DEFAULT now(),
    update_time          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (licence_registry, licence_number)
);

CREATE TABLE memberships (
    id                 uuid PRIMARY KEY,
    practitioner_id    text NOT NULL REFERENCES practitioners (id),
    organization_id    text NOT NULL REFERENCES organizations (id),
    role_system        text NOT NULL,
    role_code          text NOT NULL,
    role_display       text NOT NULL DEFAULT '',
    specialty_system   text NOT NULL DEFAULT '',
    specialty_code     text NOT NULL DEFAULT '',
    specialty_display  text NOT NULL DEFAULT '',
    valid_from         timestamptz NOT NULL,
    valid_until        timestamptz,
    create_time        timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_until IS NULL OR valid_until > valid_from)
);
CREATE INDEX memberships_by_practitioner ON memberships (practitioner_id, organization_id);
CREATE INDEX memberships_by_organization ON memberships (organization_id);

CREATE TABLE care_teams (
    id                        text PRIMARY KEY,
    managing_organization_id  text NOT NULL REFERENCES organizations (id),
    display_name              text NOT NULL,
    patient_index             text NOT NULL,
    active                    boolean NOT NULL,
    create_time               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX care_teams_by_patient ON care_teams (patient_index);

CREATE TABLE care_team_members (
    care_team_id     text NOT NULL REFERENCES care_teams (id),
    practitioner_id  text NOT NULL REFERENCES practitioners (id),
    valid_from       timestamptz NOT NULL,
    valid_until      timestamptz,
    PRIMARY KEY (care_team_id, practitioner_id, valid_from),
    CHECK (valid_until IS NULL OR valid_until > valid_from)
);
CREATE INDEX care_team_members_by_practitioner ON care_team_members (practitioner_id);
