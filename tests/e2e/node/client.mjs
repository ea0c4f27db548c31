// The MCP TypeScript SDK v2 client (@modelcontextprotocol/client, MCP 2026-07-28) through
// the proxy's `demo` (tests/e2e/run.sh).
//
//   node client.mjs URL [--deadline S]
//
// 1. pinned to 2026-07-28: connect probes with server/discover (no initialize, no session),
//    then tools/list and tools/call, stateless; every POST must carry MCP-Protocol-Version,
//    Mcp-Method (and Mcp-Name on tools/call), which the demo gateway validates after the
//    proxy (a header lost or changed on the way is its 400 HeaderMismatch);
// 2. mode 'auto': the probe finds 2026-07-28 and the client stays modern;
// 3. the SDK's default (legacy) mode: initialize opens a 2025-11-25 session, as older
//    agents do, through the same proxy.
// Only the URL given is dialed (127.0.0.1). Prints PASS/FAIL lines prefixed
// "typescript-v2:"; exit status 1 if any failed.

import { parseArgs } from 'node:util';

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const MODERN = '2026-07-28';
const TOOL = 'DemoTarget___get_weather';

const { positionals, values: opts } = parseArgs({
    allowPositionals: true,
    options: { deadline: { type: 'string', default: '60' } }
});
const url = positionals[0];
if (!url) {
    console.error('usage: node client.mjs URL [--deadline S]');
    process.exit(2);
}
setTimeout(() => {
    console.log(`FAIL typescript-v2: not finished within ${opts.deadline} s`);
    process.exit(1);
}, Number(opts.deadline) * 1000).unref();

const results = [];
function check(ok, what, detail = '') {
    results.push(ok);
    console.log(`${ok ? 'PASS' : 'FAIL'} typescript-v2: ${what}${!ok && detail ? ': ' + detail : ''}`);
    return ok;
}

/** A fetch that records what each POST carried and what came back. */
function recordingFetch(log) {
    return async (input, init = {}) => {
        const headers = new Headers(init.headers);
        let body;
        try {
            body = JSON.parse(typeof init.body === 'string' ? init.body : '');
        } catch {
            body = undefined;
        }
        const response = await fetch(input, init);
        log.push({
            method: init.method ?? 'GET',
            rpcMethod: body?.method,
            headers: Object.fromEntries(headers.entries()),
            status: response.status,
            session: response.headers.get('mcp-session-id')
        });
        return response;
    };
}

async function connect(mode, log) {
    const options = mode === 'legacy' ? {} : { versionNegotiation: { mode } };
    const client = new Client({ name: 'mcp-vpce-proxy-e2e', version: '1.0.0' }, options);
    const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: recordingFetch(log) });
    await client.connect(transport);
    return client;
}

function text(result) {
    return result?.content?.find((c) => c.type === 'text')?.text;
}

async function step(what, fn) {
    try {
        await fn();
    } catch (error) {
        check(false, what, error?.stack ?? String(error));
    }
}

await step(`pinned ${MODERN}: server/discover, tools/list, tools/call`, async () => {
    const log = [];
    const client = await connect({ pin: MODERN }, log);
    check(client.getNegotiatedProtocolVersion() === MODERN, `pinned: negotiated ${MODERN}`,
        String(client.getNegotiatedProtocolVersion()));
    check(client.getProtocolEra() === 'modern', 'pinned: modern era', String(client.getProtocolEra()));
    const discover = client.getDiscoverResult();
    check(discover?.supportedVersions?.includes(MODERN) && discover?.supportedVersions?.includes('2025-11-25'),
        'server/discover lists 2026-07-28 and 2025-11-25', JSON.stringify(discover?.supportedVersions));
    check(client.getServerVersion()?.name === 'demo-agentcore-gateway', 'server identity from server/discover',
        JSON.stringify(client.getServerVersion()));

    const listed = await client.listTools();
    check(listed.tools.some((t) => t.name === TOOL), `tools/list shows ${TOOL}`,
        JSON.stringify(listed.tools.map((t) => t.name)));
    check(listed.ttlMs === 300000 && listed.cacheScope === 'private', 'tools/list carries ttlMs and cacheScope',
        JSON.stringify({ ttlMs: listed.ttlMs, cacheScope: listed.cacheScope }));

    for (const city of ['Seattle', 'Zürich']) {
        const result = await client.callTool({ name: TOOL, arguments: { city } });
        const got = text(result);
        check(got === `Weather in ${city}: 22°C, sunny` && !result.isError, `tools/call (${city})`, String(got));
    }
    let refused;
    try {
        await client.callTool({ name: 'DemoTarget___no_such_tool', arguments: {} });
    } catch (error) {
        refused = error;
    }
    check(refused !== undefined, 'tools/call of an unknown tool is an error', 'it succeeded');

    const posts = log.filter((r) => r.method === 'POST');
    check(posts.length >= 4, 'requests went out as POSTs', JSON.stringify(log));
    check(!log.some((r) => r.rpcMethod === 'initialize'), 'no initialize', JSON.stringify(log.map((r) => r.rpcMethod)));
    check(posts.every((r) => r.headers['mcp-protocol-version'] === MODERN && r.headers['mcp-method'] === r.rpcMethod),
        'every POST carried MCP-Protocol-Version and Mcp-Method', JSON.stringify(posts.map((r) => r.headers)));
    check(posts.filter((r) => r.rpcMethod === 'tools/call').every((r) => r.headers['mcp-name'] !== undefined),
        'tools/call carried Mcp-Name', JSON.stringify(posts.map((r) => r.headers)));
    check(posts.every((r) => r.status === 200), 'every answer was 200', JSON.stringify(posts.map((r) => r.status)));
    check(log.every((r) => r.session === null && r.headers['mcp-session-id'] === undefined), 'no session anywhere',
        JSON.stringify(log.map((r) => r.session)));
    await client.close();
});

await step("mode 'auto' finds 2026-07-28", async () => {
    const client = await connect('auto', []);
    check(client.getNegotiatedProtocolVersion() === MODERN, "auto: negotiated 2026-07-28",
        String(client.getNegotiatedProtocolVersion()));
    const result = await client.callTool({ name: TOOL, arguments: { city: 'Oslo' } });
    check(text(result) === 'Weather in Oslo: 22°C, sunny', 'auto: tools/call', String(text(result)));
    await client.close();
});

await step('default (legacy) mode: initialize opens a session', async () => {
    const log = [];
    const client = await connect('legacy', log);
    check(client.getProtocolEra() === 'legacy', 'legacy: session-based era', String(client.getProtocolEra()));
    check(log.some((r) => r.rpcMethod === 'initialize' && r.session), 'legacy: initialize returned a session',
        JSON.stringify(log));
    const listed = await client.listTools();
    check(listed.tools.some((t) => t.name === TOOL), `legacy: tools/list shows ${TOOL}`);
    await client.close();
});

const failed = results.filter((ok) => !ok).length;
process.exit(failed > 0 || results.length === 0 ? 1 : 0);
