-- Distributed tracing (orchcore.tracing). Spans live in the seed's distributed_traces,
-- written in batches with COPY; these indexes serve what reads them: recent traces and
-- retention walk start_time, errors have their own. No index on tags: a search compares
-- tags by their text within a time range, and each index is paid on every span written
-- (a GIN index on tags measured a few percent of saga throughput with tracing on).
-- A workflow remembers the span it continues (an API request's traceparent) and the
-- sampling decision taken at its root, so every daemon that drives it traces it alike.

CREATE INDEX idx_distributed_traces_start ON distributed_traces (start_time);
CREATE INDEX idx_distributed_traces_errors ON distributed_traces (start_time)
    WHERE status_code = 'error';

ALTER TABLE distributed_workflows
    ADD COLUMN trace_parent_span_id TEXT,
    ADD COLUMN trace_sampled BOOLEAN NOT NULL DEFAULT true;
CREATE INDEX idx_distributed_workflows_trace ON distributed_workflows (trace_id);
