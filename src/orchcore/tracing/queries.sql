-- Named queries of tracing: spans are rows of distributed_traces (one per span).

-- name: recent_traces
-- The traces with a span that started in [$1, $2), newest first, summarised: the root
-- (a span whose parent is not in the trace; the earliest such), duration from the first
-- start to the last end, counts. Filters: $3 a service taking part, $4 errors only,
-- $5 minimum duration in microseconds; $6 limit, $7 offset; $8 only these traces (a
-- search's findings) or NULL.
WITH candidates AS (
    SELECT trace_id, max(start_time) AS latest
    FROM distributed_traces
    WHERE start_time >= $1 AND start_time < $2
      AND ($3::text IS NULL OR service_name = $3)
      AND ($8::text[] IS NULL OR trace_id = ANY($8::text[]))
    GROUP BY trace_id
    ORDER BY latest DESC
    LIMIT 5000
), spans AS (
    SELECT d.* FROM distributed_traces d JOIN candidates c USING (trace_id)
), summary AS (
    SELECT trace_id,
           min(start_time) AS start_time,
           max(coalesce(end_time, start_time)) AS end_time,
           count(*) AS span_count,
           count(DISTINCT service_name) AS service_count,
           count(*) FILTER (WHERE status_code = 'error') AS error_count,
           array_agg(DISTINCT service_name) AS services
    FROM spans GROUP BY trace_id
), roots AS (
    SELECT DISTINCT ON (s.trace_id) s.trace_id, s.service_name, s.operation_name, s.tags,
           s.status_code
    FROM spans s
    WHERE s.parent_span_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM spans p WHERE p.trace_id = s.trace_id AND p.span_id = s.parent_span_id)
    ORDER BY s.trace_id, s.start_time, s.span_id
)
SELECT m.*, r.service_name AS root_service, r.operation_name AS root_operation,
       r.tags AS root_tags, r.status_code AS root_status,
       (extract(epoch FROM m.end_time - m.start_time) * 1000)::double precision AS duration_ms
FROM summary m JOIN roots r USING (trace_id)
WHERE (NOT $4::boolean OR m.error_count > 0)
  AND ($5::bigint IS NULL OR extract(epoch FROM m.end_time - m.start_time) * 1000000 >= $5)
ORDER BY m.start_time DESC
LIMIT $6 OFFSET $7

-- name: trace_spans
-- Every span of a trace, in start order (at most $2).
SELECT trace_id, span_id, parent_span_id, operation_name, service_name, span_kind,
       status_code, start_time, end_time, duration_microseconds, tags, logs, baggage
FROM distributed_traces
WHERE trace_id = $1
ORDER BY start_time, span_id
LIMIT $2

-- name: search_spans
-- Traces whose spans match: $1 service, $2 operation (substring), $3 tags (each equal),
-- $4/$5 duration range (µs), $6/$7 time range, $8 errors only; $9 limit, $10 offset.
-- Answers one row a trace: its matching spans' count and the trace's latest match.
SELECT trace_id, count(*) AS matching_spans, max(start_time) AS latest
FROM distributed_traces
WHERE ($1::text IS NULL OR service_name = $1)
  AND ($2::text IS NULL OR operation_name ILIKE '%' || $2 || '%')
  -- a tag matches by its text, so 500 finds the number 500 as well as the string
  AND ($3::jsonb IS NULL OR NOT EXISTS (
        SELECT 1 FROM jsonb_each_text($3::jsonb) AS f(key, value)
        WHERE tags ->> f.key IS DISTINCT FROM f.value))
  AND ($4::bigint IS NULL OR duration_microseconds >= $4)
  AND ($5::bigint IS NULL OR duration_microseconds <= $5)
  AND start_time >= $6 AND start_time < $7
  AND (NOT $8::boolean OR status_code = 'error')
GROUP BY trace_id
ORDER BY latest DESC
LIMIT $9 OFFSET $10

-- name: workflow_of_trace
SELECT id, correlation_id, workflow_name FROM distributed_workflows WHERE trace_id = $1
ORDER BY started_at LIMIT 1

-- name: trace_of_workflow
-- $1 a workflow id or correlation id (as text).
SELECT id, trace_id, correlation_id FROM distributed_workflows
WHERE id::text = $1 OR correlation_id = $1
LIMIT 1

-- name: trim_spans
-- Spans that started before $1, at most $2 of them (retention, in batches).
DELETE FROM distributed_traces WHERE id IN (
    SELECT id FROM distributed_traces WHERE start_time < $1 ORDER BY start_time LIMIT $2)
