-- Telemetry summaries by window, natively partitioned by window_start (one partition a day,
-- created by the consumer before it writes into it). The primary key holds the partition column.
-- Where the timescaledb extension is available the consumer creates the same table unpartitioned
-- and makes it a hypertable instead (the TIMESCALEDB line below; gateway/hq/pgsink.py).
-- TIMESCALEDB: SELECT create_hypertable('hq_telemetry_summary', 'window_start', chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE)
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
) PARTITION BY RANGE (window_start);
