"""A real SMTP server for bourse-commerce's mail tests (aiosmtpd).

Listens on a free loopback port and prints it on the first line of stdout. Every DATA attempt is
written as one JSON line to --out: accepted messages with their envelope, Message-ID, subject
and text body; refused attempts as {"refused": ...}. --fail-first N answers the first N
messages with a temporary failure (451); recipients containing "reject" get a permanent one
(550).
"""

import argparse
import asyncio
import email
import email.policy
import json
import time

from aiosmtpd.smtp import SMTP


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
    args = parser.parse_args()
    handler = Recorder(args.out, args.fail_first)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost"), "127.0.0.1", 0
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
