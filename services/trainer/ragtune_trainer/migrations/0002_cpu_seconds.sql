-- CPU time the job's training processes used (user + system, summed over resumes): the cost of a
-- job on a shared CPU machine, beside its wall-clock (started_at .. finished_at).
ALTER TABLE trainer.jobs ADD COLUMN cpu_seconds double precision NOT NULL DEFAULT 0;
