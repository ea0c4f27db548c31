// The official MCP TypeScript SDK client running the MCP OAuth flow against one URL, then
// calling the tool.
//
//   node client.mjs URL --fixture FIXTURE_JSON --expect ok|resource-mismatch [--deadline S]
//
// StreamableHTTPClientTransport with an in-memory OAuthClientProvider whose
// redirectToAuthorization() GETs the authorization URL itself (redirect: 'manual') and keeps
// the code from its Location; the script then calls transport.finishAuth(code) and connects
// again with a new transport, as the SDK's examples do.
//
// --expect ok: listTools shows DemoTarget___whoami and callTool returns the fixture's user and
// the resource the token was issued for, which must be URL itself; the client must never have
// looked up the gateway's name. --expect resource-mismatch: connecting must fail with the SDK's
// RFC 9728 check ("Protected resource ... does not match expected ...") and no token issued.
//
// The gateway's name resolves to 127.0.0.1 (set NODE_EXTRA_CA_CERTS to the fixture's CA for
// the naive case, where the client fetches the gateway's metadata itself); any other name is
// refused. Prints PASS/FAIL lines prefixed "typescript:"; exit status 1 if any failed.

import dns from 'node:dns';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const TOOL = 'DemoTarget___whoami';
const SUBJECT = 'e2e-user';
// Registered, never dialed: redirectToAuthorization reads the code from the Location header.
const REDIRECT_URI = 'http://127.0.0.1/oauth/callback';
const MISMATCH = 'does not match';

const { positionals, values: opts } = parseArgs({
    allowPositionals: true,
    options: {
        fixture: { type: 'string' },
        expect: { type: 'string' },
        deadline: { type: 'string', default: '60' }
    }
});
const url = positionals[0];
if (!url || !opts.fixture || !['ok', 'resource-mismatch'].includes(opts.expect)) {
    console.error('usage: node client.mjs URL --fixture FIXTURE_JSON --expect ok|resource-mismatch');
    process.exit(2);
}
const fixture = JSON.parse(readFileSync(opts.fixture, 'utf8'));

const results = [];
function check(ok, what, detail = '') {
    results.push(ok);
    console.log(`${ok ? 'PASS' : 'FAIL'} typescript: ${what}${!ok && detail ? ': ' + detail : ''}`);
    return ok;
}

// Loopback guard (net.connect looks names up through dns.lookup; IP literals skip it).
const guard = { gatewayLookups: 0, refused: [] };
const realLookup = dns.lookup;
dns.lookup = function (host, options, callback) {
    if (typeof options === 'function') {
        callback = options;
        options = {};
    }
    if (host === fixture.gateway_host) {
        guard.gatewayLookups += 1;
        return realLookup.call(dns, '127.0.0.1', options, callback);
    }
    guard.refused.push(host);
    const error = Object.assign(new Error(`${host}: refused by the e2e loopback guard`), { code: 'ENOTFOUND' });
    process.nextTick(callback, error);
};

class MemoryOAuthProvider {
    constructor() {
        this.client = undefined;
        this.savedTokens = undefined;
        this.verifier = undefined;
        this.expectedState = undefined;
        this.code = undefined;
    }
    get redirectUrl() {
        return REDIRECT_URI;
    }
    get clientMetadata() {
        return {
            client_name: 'oauth-e2e typescript client',
            redirect_uris: [REDIRECT_URI],
            grant_types: ['authorization_code'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none'
        };
    }
    state() {
        this.expectedState = randomBytes(16).toString('hex');
        return this.expectedState;
    }
    clientInformation() {
        return this.client;
    }
    saveClientInformation(info) {
        this.client = info;
    }
    tokens() {
        return this.savedTokens;
    }
    saveTokens(tokens) {
        this.savedTokens = tokens;
    }
    saveCodeVerifier(verifier) {
        this.verifier = verifier;
    }
    codeVerifier() {
        return this.verifier;
    }
    // Plays the user agent: the authorization server approves at once.
    async redirectToAuthorization(authorizationUrl) {
        const answer = await fetch(authorizationUrl, { redirect: 'manual', signal: AbortSignal.timeout(10_000) });
        const location = answer.headers.get('location') ?? '';
        if (answer.status !== 302 || !location.startsWith(REDIRECT_URI)) {
            throw new Error(`authorize answered ${answer.status} ${location || (await answer.text())}`);
        }
        const query = new URL(location).searchParams;
        if (query.get('state') !== this.expectedState) {
            throw new Error(`authorize returned state ${query.get('state')}, expected ${this.expectedState}`);
        }
        if (!query.get('code')) {
            throw new Error(`authorize refused: ${query}`);
        }
        this.code = query.get('code');
    }
}

function describe(error) {
    const parts = [];
    for (let e = error; e && parts.length < 6; e = e.cause) {
        parts.push(`${e.name ?? 'Error'}: ${e.message ?? e}`);
    }
    return parts.join(' <- ');
}

async function session(provider) {
    const newClient = () => new Client({ name: 'oauth-e2e', version: '1.0.0' });
    const newTransport = () => new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
    let transport = newTransport();
    try {
        await newClient().connect(transport);
        throw new Error('the first connect succeeded without authorization');
    } catch (e) {
        if (!(e instanceof UnauthorizedError)) throw e;
    }
    if (!provider.code) throw new Error('UnauthorizedError without an authorization code');
    await transport.finishAuth(provider.code);
    await transport.close();

    const client = newClient();
    await client.connect(newTransport());
    try {
        const tools = (await client.listTools()).tools.map((t) => t.name);
        const result = await client.callTool({ name: TOOL, arguments: {} });
        if (result.isError) throw new Error(`callTool answered an error: ${JSON.stringify(result.content)}`);
        return { tools, text: result.content[0].text };
    } finally {
        await client.close();
    }
}

async function main() {
    const sdk = JSON.parse(readFileSync(new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url)));
    console.log(`typescript: @modelcontextprotocol/sdk ${sdk.version}, node ${process.version}, against ${url}`);
    const provider = new MemoryOAuthProvider();
    let error;
    let outcome = { tools: [], text: '' };
    try {
        outcome = await session(provider);
    } catch (e) {
        error = e;
    }

    if (opts.expect === 'ok') {
        if (!check(!error, 'OAuth flow, finishAuth, connect, listTools, callTool', error && describe(error))) return 1;
        check(outcome.tools.includes(TOOL), `listTools shows ${TOOL}`, `got ${outcome.tools}`);
        const who = JSON.parse(outcome.text);
        check(who.sub === SUBJECT, `${TOOL} answers the token's subject ${SUBJECT}`, outcome.text);
        check(who.resource === url, 'the token was issued for the URL the client connected to', `token resource ${who.resource}`);
        check(
            guard.gatewayLookups === 0,
            "the client never needed the gateway's name (everything named the sidecar)",
            `${guard.gatewayLookups} lookups of ${fixture.gateway_host}`
        );
    } else {
        const detail = error ? describe(error) : `the flow succeeded: tools ${outcome.tools}, whoami ${outcome.text}`;
        check(
            !!error && detail.includes(MISMATCH),
            "the flow stops on the protected resource's `resource` not matching the URL",
            detail
        );
        if (error) console.log(`typescript: the SDK said: ${detail}`);
        check(provider.savedTokens === undefined, 'no token was issued', 'the client holds a token');
    }
    check(guard.refused.length === 0, 'only loopback was dialed', `refused lookups: ${guard.refused}`);
    return results.every(Boolean) ? 0 : 1;
}

const deadline = setTimeout(() => {
    check(false, `finished within the ${opts.deadline} s deadline`);
    process.exit(1);
}, Number(opts.deadline) * 1000);
deadline.unref();
main().then(
    (code) => process.exit(code),
    (e) => {
        check(false, 'ran to the end', describe(e));
        process.exit(1);
    }
);
