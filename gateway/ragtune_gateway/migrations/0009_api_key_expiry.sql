-- A key may expire: the keys an evaluation worker makes for a run's in-process calls expire a few
-- leases after their last extension (the worker extends them while the run is alive), so a worker
-- that is killed before revoking its key leaves none that stays valid. NULL: the key never expires.
ALTER TABLE gateway.api_keys ADD COLUMN expires_at timestamptz;
