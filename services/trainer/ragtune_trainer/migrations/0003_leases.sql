-- Job leases: the replica training a job holds it until lease_expires_at and renews it (heartbeat_at)
-- while the job trains; any replica takes over a job whose lease has expired and resumes it from its
-- last checkpoint. Every write of the holder is fenced on lease_owner, so a replica that lost its
-- lease can no longer change the job.
ALTER TABLE trainer.jobs
    ADD COLUMN lease_owner text,
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN heartbeat_at timestamptz;
