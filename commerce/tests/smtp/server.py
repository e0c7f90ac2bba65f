"""A real SMTP server for bourse-commerce's mail tests (aiosmtpd).

Listens on a free loopback port and prints it on the first line of stdout. Every DATA attempt is
written as one JSON line to --out: accepted messages with their envelope, Message-ID, subject
and text body; refused attempts as {"refused": ...}. --fail-first N answers the first N
messages with a temporary failure (451); recipients containing "reject" get a permanent one
(550). --tls-cert/--tls-key enable STARTTLS (required), or TLS from the first byte with
--implicit-tls; --auth USER:PASSWORD requires that login.
"""

import argparse
import asyncio
import email
import email.policy
import json
import ssl
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Recorder:
    def __init__(self, out, fail_first):
        self.out = out
        self.fail_first = fail_first
        self.attempts = 0

    def write(self, record):
        record["at"] = time.time()
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "reject" in address:
            self.write({"refused": "550", "rcpt": address})
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.attempts += 1
        if self.attempts <= self.fail_first:
            self.write({"refused": "451", "attempt": self.attempts})
            return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        self.write(
            {
                "auth": session.authenticated,
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "message_id": message["Message-ID"],
                "subject": message["Subject"],
                "text": body.get_content() if body is not None else None,
                "html": html.get_content() if html is not None else None,
            }
        )
        return "250 Message accepted for delivery"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--auth")
    args = parser.parse_args()
    handler = Recorder(args.out, args.fail_first)
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    options = {"hostname": "localhost"}
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
                and auth_data.password.decode() == password
            return AuthResult(success=ok, handled=False)

        options.update(authenticator=authenticator, auth_required=True,
                       auth_require_tls=context is not None and not args.implicit_tls)
    if context is not None and not args.implicit_tls:
        options.update(tls_context=context, require_starttls=True)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, **options), "127.0.0.1", 0,
        ssl=context if args.implicit_tls else None,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
