"""A TLS front for redis-server that authenticates clients as ElastiCache does with IAM.

It listens with TLS 1.3 only (as ElastiCache's public endpoints) and forwards every command to a
plain redis-server, once the connection has sent `AUTH <user> <token>` (or `HELLO ... AUTH`) with a
token it accepts. A token is checked by signing it again with botocore (an implementation of SigV4
independent of the extension's): the same presigned URL, at the token's own `X-Amz-Date`, with the
credentials the front was given, must come out byte for byte. It must also name the front's cache
and region, `Action=connect`, the user it authenticates, `ResourceType=ServerlessCache` exactly when
the front serves a serverless cache, and be unexpired.

Like ElastiCache, a connection is closed `--max-auth-age` seconds after its last successful AUTH
(12 hours there); AUTH again with a fresh token extends it. A refused AUTH gets WRONGPASS and the
connection stays unauthenticated (a refused re-authentication closes it).

Every event is appended as one JSON line to `--events` (never the token itself).

    iam_front.py --listen PORT --upstream PORT --cert C --key K --cache NAME --user USER
                 --region R --access-key AK --secret-key SK [--session-token T] [--serverless]
                 [--max-auth-age S] --events FILE
"""

import argparse
import asyncio
import datetime
import hmac
import json
import ssl
import time
from urllib.parse import parse_qsl, quote

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ARGS = None
NEXT_ID = 0


def event(**fields):
    fields["t"] = time.time()
    try:
        with open(ARGS.events, "a") as f:
            f.write(json.dumps(fields) + "\n")
    except FileNotFoundError:
        pass  # the test is over and its folder gone; a late close has no reader


def presign(user, when, expires):
    """The token botocore signs for `user` at `when` (what AWS's Python sample does)."""
    query = "Action=connect&User=" + quote(user, safe="-_.~")
    if ARGS.serverless:
        query += "&ResourceType=ServerlessCache"
    request = AWSRequest(method="GET", url=f"https://{ARGS.cache}/?{query}", data={}, headers={})
    credentials = Credentials(ARGS.access_key, ARGS.secret_key, ARGS.session_token)
    signer = botocore.auth.SigV4QueryAuth(credentials, "elasticache", ARGS.region, expires=expires)
    now = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: when
    try:
        signer.add_auth(request)
    finally:
        botocore.auth.get_current_datetime = now
    return request.url.removeprefix("https://")


def check(user, token):
    """None if the token is good for `user`, else why not."""
    host, _, query = token.partition("/?")
    if host != ARGS.cache:
        return "wrong cache"
    params = dict(parse_qsl(query, keep_blank_values=True))
    if params.get("Action") != "connect" or params.get("User") != user:
        return "not a connect token for this user"
    if ("ResourceType" in params) != ARGS.serverless:
        return "wrong resource type"
    try:
        when = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        expires = int(params["X-Amz-Expires"])
    except (KeyError, ValueError):
        return "malformed"
    if not 0 < expires <= 900:
        return "bad expiry"
    signed_at = when.replace(tzinfo=datetime.timezone.utc).timestamp()
    if time.time() > signed_at + expires:
        return "expired"
    if time.time() < signed_at - 300:
        return "signed in the future"
    if not hmac.compare_digest(presign(user, when, expires), token):
        return "bad signature"
    return None


async def read_command(reader):
    """One RESP array of bulk strings, as (raw bytes, [args])."""
    line = await reader.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        raise ValueError("inline commands are not supported")
    raw = [line]
    args = []
    for _ in range(int(line[1:])):
        header = await reader.readline()
        data = await reader.readexactly(int(header[1:]) + 2)
        raw += [header, data]
        args.append(data[:-2])
    return b"".join(raw), args


def credentials_in(args):
    """(user, token) of an AUTH or HELLO ... AUTH command, else None."""
    name = args[0].upper()
    if name == b"AUTH" and len(args) == 3:
        return args[1].decode(), args[2].decode()
    if name == b"HELLO":
        for i, a in enumerate(args):
            if a.upper() == b"AUTH" and i + 2 < len(args):
                return args[i + 1].decode(), args[i + 2].decode()
    return None


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(client_reader, client_writer):
    global NEXT_ID
    NEXT_ID += 1
    conn = NEXT_ID
    event(event="connect", conn=conn)
    upstream = None
    authed_at = None
    try:
        while True:
            if authed_at is not None and ARGS.max_auth_age:
                left = authed_at + ARGS.max_auth_age - time.monotonic()
                if left <= 0:
                    event(event="drop", conn=conn, why="auth age")
                    return
                try:
                    command = await asyncio.wait_for(read_command(client_reader), left)
                except asyncio.TimeoutError:
                    continue
            else:
                command = await read_command(client_reader)
            if command is None:
                return
            raw, args = command
            creds = credentials_in(args)
            if creds is not None:
                user, token = creds
                why = "wrong user" if user != ARGS.user else check(user, token)
                event(event="auth", conn=conn, ok=why is None, why=why, reauth=authed_at is not None)
                if why is not None:
                    if authed_at is not None:
                        # Replies may be on their way from redis-server: close, do not reorder.
                        return
                    client_writer.write(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
                    await client_writer.drain()
                    continue
                authed_at = time.monotonic()
                if upstream is None:
                    r, w = await asyncio.open_connection("127.0.0.1", ARGS.upstream)
                    upstream = w
                    asyncio.create_task(pipe(r, client_writer))
                # Answered by redis-server, in order with the replies before it.
                if args[0].upper() == b"HELLO":
                    raw = b"".join(
                        b"$%d\r\n%s\r\n" % (len(a), a)
                        for a in [b"HELLO"] + args[1:2]
                    )
                    raw = (b"*2\r\n" if len(args) > 1 else b"*1\r\n") + raw
                else:
                    raw = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"
            elif authed_at is None:
                event(event="refused", conn=conn, why="not authenticated")
                client_writer.write(b"-NOAUTH Authentication required.\r\n")
                await client_writer.drain()
                continue
            upstream.write(raw)
            await upstream.drain()
    except (ConnectionError, ValueError, asyncio.IncompleteReadError):
        pass
    finally:
        event(event="close", conn=conn)
        if upstream is not None:
            upstream.close()
        client_writer.close()


async def main():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(ARGS.cert, ARGS.key)
    server = await asyncio.start_server(serve, "127.0.0.1", ARGS.listen, ssl=context)
    event(event="listening")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--session-token")
    parser.add_argument("--serverless", action="store_true")
    parser.add_argument("--max-auth-age", type=float, default=0)
    parser.add_argument("--events", required=True)
    ARGS = parser.parse_args()
    asyncio.run(main())
