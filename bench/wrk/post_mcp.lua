-- wrk script of bench/run.sh: an MCP tools/call POST as an agent sends it, and a JSON
-- summary line at the end in the shape every load of the benchmark reports
-- (units, seconds, errors, latency_us percentiles).

wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"DemoTarget___get_weather","arguments":{"city":"Seattle"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Session-Id"] = "bench-session-0001"
wrk.headers["MCP-Protocol-Version"] = "2025-06-18"

done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format(
    '{"units":%d,"unit":"request","seconds":%.6f,"bytes":%d,"errors":%d,' ..
    '"errors_detail":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"first_error":%s,' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration / 1e6, summary.bytes, errors,
    e.connect, e.read, e.write, e.status, e.timeout,
    errors > 0 and '"see errors_detail"' or 'null',
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
