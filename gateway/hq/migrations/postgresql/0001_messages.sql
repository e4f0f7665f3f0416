-- HQ's tables (storegw hq consume): a row per message id at its highest rev, the stores' state,
-- dead letters with their reason, the stores' manifests (gap repair), the consumers' counters.
CREATE TABLE IF NOT EXISTS hq_messages (
    id          text PRIMARY KEY,
    store       text NOT NULL,
    kind        text NOT NULL,          -- the topic after PREFIX/STORE/, e.g. telemetry/summary, reports/daily
    rev         bigint NOT NULL,        -- 0 for kinds without revisions
    ts          timestamptz NOT NULL,
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    revisions   integer NOT NULL DEFAULT 1  -- how many times a higher rev replaced it, plus one
);
CREATE INDEX IF NOT EXISTS hq_messages_store_kind_ts ON hq_messages (store, kind, ts DESC);

CREATE TABLE IF NOT EXISTS hq_stores (
    store       text PRIMARY KEY,
    state       text,                   -- online | offline (retained P/status, the LWT); NULL before any
    status_id   text,
    status_ts   timestamptz,
    version     text,
    received_ms bigint,                 -- when the consumer read the status that set state (orders statuses)
    changed_at  timestamptz,
    last_seen   timestamptz NOT NULL DEFAULT now(),
    lag_ms      bigint NOT NULL DEFAULT 0,  -- read time minus the newest message's ts, last batch
    messages    bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS hq_dead_letters (
    seq         bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    store       text,
    payload     bytea NOT NULL,
    reason      text NOT NULL
);

CREATE TABLE IF NOT EXISTS hq_manifests (
    store        text NOT NULL,
    seq          bigint NOT NULL,
    id           text,
    window_start timestamptz,
    window_s     integer,
    ids          jsonb NOT NULL DEFAULT '{}',  -- message id -> rev the store sent in the window
    state        text NOT NULL,               -- absent (a gap in seq) | pending | requested | complete
    attempts     integer NOT NULL DEFAULT 0,
    missing      integer NOT NULL DEFAULT 0,
    received_at  timestamptz NOT NULL DEFAULT now(),
    check_at     timestamptz NOT NULL,
    PRIMARY KEY (store, seq)
);
CREATE INDEX IF NOT EXISTS hq_manifests_due ON hq_manifests (check_at) WHERE state <> 'complete';

CREATE TABLE IF NOT EXISTS hq_consumers (
    consumer   text PRIMARY KEY,
    updated_at timestamptz NOT NULL DEFAULT now(),
    stats      jsonb NOT NULL
);
