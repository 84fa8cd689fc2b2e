"""Generate the English CI sample ``en-kb``: an internal knowledge base of a fictional company.

Three kinds of pages, as a real one has them, so that each retriever has queries it is good at:

* error-code pages (many near-identical, told apart only by code and service: a lexical task),
* internal tool pages (invented product names, looked up by name or by what the tool does),
* policy and how-to pages (asked about in other words than they use: a dense task).

Deterministic (fixed seed). Writes ``generated.passages.tsv`` and ``generated.queries.tsv``; ``make_beir.py`` turns
them into the BEIR files.
Usage: python tests/data/eval/make_en_kb.py && python tests/data/eval/make_beir.py tests/data/eval/en-kb
"""

from __future__ import annotations

import random
from pathlib import Path

__all__: list[str] = []

OUT = Path(__file__).parent / "en-kb"

SERVICES = [
    ("billing-api", "billing"), ("auth-gateway", "identity"), ("search-indexer", "search"),
    ("payments-worker", "payments"), ("report-builder", "analytics"), ("file-sync", "storage"),
    ("notification-hub", "messaging"), ("inventory-service", "supply chain"),
    ("order-router", "commerce"), ("pricing-engine", "commerce"), ("media-transcoder", "video"),
    ("geo-lookup", "maps"), ("audit-log", "compliance"), ("webhook-relay", "integrations"),
    ("session-store", "identity"), ("ledger-sync", "finance"),
]
# (failure, cause, fix, symptom question in other words)
FAILURES = [
    ("the database connection pool is exhausted", "Long-running queries keep connections checked out.",
     "Restart the stuck workers and lower the statement timeout.", "runs out of database connections"),
    ("a request exceeds the 30 second upstream timeout", "A dependency answers too slowly under load.",
     "Check the dependency's dashboard and raise the timeout only if the slowness is expected.", "gives up waiting on a slow backend"),
    ("the signing certificate has expired", "Certificates are rotated yearly and the renewal job failed.",
     "Run the certificate renewal job by hand and redeploy.", "complains that its TLS certificate is out of date"),
    ("the message queue is full", "Consumers are down or slower than producers.",
     "Scale up the consumers and purge poison messages from the dead-letter queue.", "cannot publish because the queue has no room"),
    ("the disk holding temporary files is full", "Old export files were never cleaned up.",
     "Delete files older than seven days from the scratch volume and enable the cleanup cron job.", "has no space left for temp files"),
    ("a schema migration is still running", "Writes are blocked while the migration holds a table lock.",
     "Wait for the migration to finish; never kill it half-way.", "is blocked by a database migration in progress"),
    ("the API key sent by the client is unknown", "The key was revoked or belongs to another environment.",
     "Ask the client team to create a new key in the developer portal.", "rejects the caller's access key"),
    ("the rate limit of 600 requests per minute is exceeded", "A client retries in a tight loop.",
     "Identify the client from the access log and ask it to back off exponentially.", "throttles a client that sends too many calls"),
    ("the cache cluster cannot be reached", "A network policy change blocked the cache port.",
     "Roll back the network policy and flush the stale entries.", "loses its connection to the in-memory cache"),
    ("a payload is larger than 10 megabytes", "Clients upload whole files instead of using the upload URL.",
     "Point the client to the multipart upload endpoint.", "refuses a request body that is too big"),
    ("the feature flag service returns no configuration", "The flag service was deployed without its seed data.",
     "Reload the flag configuration from the last known good snapshot.", "starts without its feature toggles"),
    ("clock skew between hosts exceeds five seconds", "The time sync daemon stopped on one host.",
     "Restart the time sync daemon and re-issue the affected tokens.", "fails because server clocks disagree"),
]
TOOLS = [
    ("Lanternfish", "log search tool", "searches application logs across all services for the last 30 days", "observability"),
    ("Quillpad", "shared note editor", "lets teams write meeting notes together in the browser", "workplace"),
    ("Harborview", "deployment dashboard", "shows which version of every service runs in each environment", "platform"),
    ("Tallystone", "expense tool", "collects receipts and turns them into expense reports", "finance"),
    ("Brightmoor", "on-call scheduler", "plans on-call rotations and pages the person on duty", "reliability"),
    ("Cinderpath", "feature flag console", "switches features on and off for a share of customers", "platform"),
    ("Owlsbridge", "access request portal", "grants and revokes access to internal systems after manager approval", "security"),
    ("Marrowline", "data catalog", "lists every dataset with its owner, schema and freshness", "analytics"),
    ("Pebblecount", "license tracker", "keeps track of software licenses and when they expire", "procurement"),
    ("Gullwing", "load testing service", "replays recorded traffic against a staging environment", "performance"),
    ("Ferncastle", "design system", "provides the shared buttons, forms and colours for web apps", "frontend"),
    ("Sablecrest", "secrets vault", "stores passwords and API keys and hands them to services at start-up", "security"),
    ("Driftwood", "incident tracker", "records incidents, their timeline and the follow-up actions", "reliability"),
    ("Kestrelnet", "VPN client", "connects laptops to the internal network from outside the office", "IT"),
    ("Mosslight", "room booking app", "books meeting rooms and desks for a day", "workplace"),
    ("Emberfall", "build farm", "compiles and tests every pull request in parallel", "developer productivity"),
    ("Thistledown", "survey tool", "runs anonymous employee surveys", "people"),
    ("Ravenmark", "code review bot", "comments on pull requests that break the style guide", "developer productivity"),
    ("Copperleaf", "invoice archive", "keeps signed invoices for ten years", "finance"),
    ("Wrenfield", "onboarding checklist", "walks new hires through their first two weeks", "people"),
]
# (id, title, text, question in other words)
POLICIES = [
    ("vacation", "Requesting vacation", "Vacation is requested in the HR portal under Absences. Your manager approves or declines it within five working days, and approved days appear in the team calendar.", "how do I take time off"),
    ("carryover", "Unused vacation", "Vacation days not taken by the end of the year can be carried over until March 31. Days left after that date are lost unless illness prevented you from taking them.", "do leftover holidays expire"),
    ("sick", "Calling in sick", "If you are ill, tell your manager before your working day starts. From the third day of absence a doctor's note is required.", "what to do when I am unwell and cannot work"),
    ("hotel", "Hotel costs on business trips", "Hotels are reimbursed up to 150 dollars per night, or 220 dollars in New York and San Francisco. Book through the travel portal so the invoice goes to the company.", "how much can I spend on accommodation when travelling for work"),
    ("train", "Rail travel", "Train is the preferred way to travel for trips under four hours. Longer journeys may be booked in first class.", "can I book a premium seat on a long rail journey"),
    ("meals", "Meal allowance", "Each full travel day comes with a meal allowance of 60 dollars. Meals paid by a host or included in the hotel rate are deducted.", "per diem for food while away"),
    ("password", "Resetting your password", "Reset your password yourself in the self-service portal using the code sent to your registered phone. A new password needs at least 14 characters and cannot repeat any of your last five.", "I forgot my login credentials"),
    ("lockout", "Locked accounts", "After ten failed sign-in attempts an account is locked for 30 minutes. The service desk can unlock it earlier after verifying your identity.", "too many wrong attempts and now I cannot sign in"),
    ("printer", "Adding a printer", "Network printers are added from the printer portal: pick your floor, click the device and the driver installs itself. Confidential documents are released at the device with your badge.", "set up printing on my laptop"),
    ("laptop", "Laptop replacement", "Standard laptops are replaced after four years. Order a replacement in the IT shop and back up your files to your cloud drive before handing in the old one.", "when do I get a new computer"),
    ("backup", "Restoring deleted files", "Files on your cloud drive are backed up every hour and kept for 90 days. Restore a deleted file yourself from the recycle bin of the web interface.", "recover a document I removed by mistake"),
    ("phishing", "Reporting phishing", "Do not forward suspicious emails. Use the Report phishing button in the mail client, and if you already clicked a link, change your password at once.", "I got a strange email asking for my password"),
    ("remote", "Working from home", "You may work remotely up to three days a week when your tasks allow it. There is a one-time allowance of 300 dollars for equipment at home.", "how many days can I do home office"),
    ("overtime", "Overtime", "Working time is recorded in the time tracking app. Overtime goes to a flexible hours account that may hold at most 40 extra hours at the end of a quarter.", "limit on extra hours I can bank"),
    ("parental", "Parental leave", "Parental leave must be announced in writing at least seven weeks before it starts. Part-time work of up to 32 hours a week is possible during the leave.", "notice period before going on leave after a baby is born"),
    ("pension", "Company pension", "The company adds 20 percent to every dollar you convert from your gross salary into the company pension plan. The amount can be changed once a year.", "does the employer top up retirement savings"),
    ("payslip", "Payslips", "Payslips are available in the HR portal on the second-to-last working day of each month. Salaries are paid at the end of the month.", "where do I see my salary statement"),
    ("bike", "Bike leasing", "Through the bike programme you can lease up to two bicycles or e-bikes. The rate is deducted from gross pay over 36 months.", "get an electric bicycle through work"),
    ("canteen", "Canteen", "The canteen on the ground floor is open on working days from 11:30 to 14:00 and serves a vegetarian and a vegan dish every day. Pay with your badge.", "when can I get lunch in the building"),
    ("visitors", "Registering visitors", "Register visitors in the reception system by the day before. They receive a day pass at reception against photo ID and are picked up by you.", "a guest is coming to the office tomorrow"),
    ("fire", "Fire safety", "In case of fire leave the building by the marked escape routes and gather at the north car park. Do not use the lifts.", "what to do if the alarm goes off"),
    ("firstaid", "First aid", "First aid kits hang next to every staircase and a defibrillator is at the main reception.", "where is the AED"),
    ("parking", "Parking", "Staff parking is in the underground garage, which opens with your badge. Charging points for electric cars are on level minus one.", "charge my EV at the office"),
    ("training", "Training budget", "Every employee has a training budget of 1,500 dollars a year. Request courses in the learning portal; your manager approves content and time.", "money for courses and conferences"),
    ("notice", "Notice periods", "During probation the notice period is two weeks. After probation the statutory periods apply, growing with length of service.", "how long before I can leave during the trial period"),
    ("recycling", "Recycling", "Paper goes in the blue bins, plastic and cans in the yellow bins, food waste in the brown bins. Glass is collected by colour at the loading dock.", "which bin for old newspapers"),
    ("mentor", "Buddy programme", "Every new hire gets a buddy from their team for the first three months. At the end of probation there is a feedback conversation.", "will someone help me settle in when I start"),
    ("security-badge", "Lost badge", "Report a lost badge to reception at once so it can be blocked. A replacement costs nothing the first time.", "I misplaced my access card"),
    ("expenses-deadline", "Expense deadlines", "Expenses must be submitted within three months of the trip with all receipts attached as PDF.", "how late can I claim travel costs"),
    ("wifi", "Guest Wi-Fi", "Visitors connect to the Guest network; the password changes every Monday and is shown on the screens at reception.", "internet access for people visiting us"),
]


def main() -> None:
    rng = random.Random(7)
    passages: list[tuple[str, str, str]] = []
    queries: list[tuple[str, str, list[tuple[str, int]]]] = []

    codes = rng.sample(range(1000, 9999), len(SERVICES) * len(FAILURES))
    pages: dict[tuple[int, int], str] = {}
    for s, (service, team) in enumerate(SERVICES):
        for f, (failure, cause, fix, _) in enumerate(FAILURES):
            if rng.random() < 0.35:
                continue  # not every service has every error
            code = f"E{codes[s * len(FAILURES) + f]}"
            doc_id = f"err-{code.lower()}"
            pages[(s, f)] = doc_id
            minutes = rng.choice([10, 15, 30])
            text = (f"{service} returns error {code} when {failure}. {cause} {fix} "
                    f"If it persists for more than {minutes} minutes, page the {team} on-call engineer.")
            passages.append((doc_id, f"Error {code} in {service}", text))
    for n, ((s, f), doc_id) in enumerate(sorted(pages.items())):
        code = doc_id.split("-")[1].upper()
        if n % 4 == 0:
            queries.append((f"q-code-{code}", rng.choice([f"what does {code} mean", f"{code}", f"how to fix error {code}"]), [(doc_id, 2)]))
        if n % 5 == 1:
            service = SERVICES[s][0].replace("-", " ")
            related = [(pages[(t, f)], 1) for t in range(len(SERVICES)) if t != s and (t, f) in pages]
            queries.append((f"q-symptom-{doc_id}", f"{service} {FAILURES[f][3]}", [(doc_id, 2), *related]))

    for name, kind, does, team in TOOLS:
        doc_id = f"tool-{name.lower()}"
        passages.append((doc_id, name, f"{name} is the {kind} run by the {team} team. It {does}. Ask in the #{name.lower()} channel for help."))
        queries.append((f"q-name-{name.lower()}", f"{name} owner team", [(doc_id, 2)]))
        queries.append((f"q-does-{name.lower()}", f"which internal tool {does.replace('lets teams ', '').split(' and ')[0]}", [(doc_id, 2)]))

    for key, title, text, question in POLICIES:
        doc_id = f"policy-{key}"
        passages.append((doc_id, title, text))
        queries.append((f"q-policy-{key}", question, [(doc_id, 2)]))

    OUT.mkdir(exist_ok=True)
    (OUT / "generated.passages.tsv").write_text("".join(f"{i}\t{t}\t{x}\n" for i, t, x in passages), encoding="utf-8")
    (OUT / "generated.queries.tsv").write_text(
        "".join(f"{i}\t{q}\t{' '.join(f'{d}:{g}' for d, g in j)}\n" for i, q, j in queries), encoding="utf-8"
    )
    print(f"{len(passages)} passages, {len(queries)} queries")


if __name__ == "__main__":
    main()
