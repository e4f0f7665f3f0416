-- Telemetry summaries as a TimescaleDB hypertable (used instead of native partitioning when the
-- extension is available). Unique keys must hold the time column: (window_start, id).
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE TABLE IF NOT EXISTS hq_telemetry_summary (
    window_start timestamptz NOT NULL,
    id           text NOT NULL,
    store        text NOT NULL,
    device       text,
    metric       text,
    window_s     integer,
    rev          bigint NOT NULL,
    count        bigint,
    min          double precision,
    max          double precision,
    mean         double precision,
    payload      jsonb NOT NULL,
    PRIMARY KEY (window_start, id)
);
SELECT create_hypertable('hq_telemetry_summary', 'window_start', chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => TRUE);
