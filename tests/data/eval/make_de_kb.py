"""Generate the directory part of the German sample ``de-kb`` (the rest is hand-written).

An internal knowledge base in German has, next to its prose, many pages of one shape: meeting
rooms, internal applications, office sites. They differ mostly in names and numbers, which is
where an English embedding model reading German has least to go on. Deterministic (fixed seed).
Writes ``generated.passages.tsv`` and ``generated.queries.tsv``; ``make_beir.py`` merges them
with ``handwritten.*.tsv`` into the BEIR files.
Usage: python tests/data/eval/make_de_kb.py && python tests/data/eval/make_beir.py tests/data/eval/de-kb
"""

from __future__ import annotations

import random
from pathlib import Path

__all__: list[str] = []

OUT = Path(__file__).parent / "de-kb"

ROOMS = """Weser Oder Donau Main Mosel Saale Spree Havel Ems Lahn Neckar Inn Lech Ruhr Fulda Werra Aller
Leine Harz Eifel Rhön Taunus Spessart Allgäu Sylt Rügen Usedom Föhr Amrum Borkum Juist Fehmarn
Hiddensee Brocken Watzmann Ilm Unstrut Altmühl Regen Nahe""".split()
EQUIPMENT = [
    "ein großer Bildschirm und eine Videokonferenzanlage", "ein Beamer und ein Whiteboard",
    "zwei Bildschirme, Kamera und Deckenmikrofone", "ein Flipchart und eine Pinnwand",
    "ein digitales Whiteboard mit Stift", "nur ein Fernseher mit HDMI-Kabel",
]
SYSTEMS = ["die Raumbuchung im Kalender", "das Buchungsterminal an der Tür", "den Empfang"]
EXTRAS = [
    "Getränke bestellen Sie mindestens einen Tag vorher bei der Kantine.",
    "Nach der Besprechung stellen Sie bitte die Tische wieder zurück.",
    "Der Raum ist barrierefrei erreichbar.",
    "Bei Buchungen über vier Stunden ist die Zustimmung der Teamassistenz nötig.",
]
APPS = [
    ("Zeitwerk", "erfasst Arbeitszeiten und Abwesenheiten", "Personal"),
    ("Belegblick", "liest Rechnungen ein und leitet sie zur Freigabe weiter", "Buchhaltung"),
    ("Reiseplan", "bucht Bahnfahrten, Flüge und Hotels für Dienstreisen", "Reisestelle"),
    ("Lernpfad", "verwaltet Schulungen, Kurse und Teilnahmebescheinigungen", "Personalentwicklung"),
    ("Schlüsselbund", "verwahrt Passwörter für gemeinsam genutzte Konten", "IT-Sicherheit"),
    ("Hafenmeister", "überwacht Server und meldet Ausfälle", "Rechenzentrum"),
    ("Vertragsarchiv", "speichert unterschriebene Verträge mit Fristen und Kündigungsterminen", "Rechtsabteilung"),
    ("Lagerblick", "zeigt Bestände und Lieferzeiten aller Lager", "Logistik"),
    ("Kundenkartei", "enthält Kontaktdaten und Gesprächsnotizen zu Kunden", "Vertrieb"),
    ("Ticketwerk", "nimmt Störungsmeldungen an den Servicedesk entgegen", "IT-Betrieb"),
    ("Rundbrief", "verschickt interne Mitteilungen an alle Beschäftigten", "Kommunikation"),
    ("Dienstplaner", "plant Schichten und Rufbereitschaften", "Betrieb"),
    ("Fuhrpark", "verwaltet Dienstwagen, Fahrtenbücher und Tankkarten", "Facility Management"),
    ("Ideenkasten", "sammelt Verbesserungsvorschläge der Beschäftigten", "Qualitätsmanagement"),
    ("Budgetbaum", "plant Kostenstellen und vergleicht sie mit den Ist-Kosten", "Controlling"),
    ("Druckzentrale", "verwaltet Netzwerkdrucker und Druckaufträge", "IT-Betrieb"),
    ("Bewerberportal", "nimmt Bewerbungen entgegen und plant Vorstellungsgespräche", "Personal"),
    ("Wissensnetz", "durchsucht Handbücher, Protokolle und Anleitungen", "Kommunikation"),
    ("Prüfstand", "führt automatische Softwaretests vor jeder Auslieferung aus", "Entwicklung"),
    ("Einkaufskorb", "bestellt Büromaterial und Hardware", "Einkauf"),
]
SITES = [
    ("Leipzig", "Augustusplatz", "04109"), ("Bremen", "Am Wall", "28195"), ("Kassel", "Königsplatz", "34117"),
    ("Rostock", "Lange Straße", "18055"), ("Freiburg", "Kaiser-Joseph-Straße", "79098"),
    ("Nürnberg", "Königstraße", "90402"), ("Hannover", "Georgstraße", "30159"), ("Erfurt", "Anger", "99084"),
    ("Kiel", "Holstenstraße", "24103"), ("Mannheim", "Planken", "68161"), ("Regensburg", "Domplatz", "93047"),
    ("Münster", "Prinzipalmarkt", "48143"),
]
FIRST = "Anna Jonas Leonie Felix Marie Paul Sophie Lukas Emma Ben Lea Finn Mia Noah Clara Elias".split()
LAST = "Becker Wagner Schulz Hoffmann Koch Richter Klein Wolf Neumann Schwarz Braun Zimmermann".split()


def main() -> None:
    rng = random.Random(11)
    passages: list[tuple[str, str, str]] = []
    queries: list[tuple[str, str, str]] = []
    for n, room in enumerate(ROOMS):
        doc_id = f"raum-{n:02d}"
        seats = rng.choice([4, 6, 8, 10, 12, 16, 20, 30])
        text = (f"Der Besprechungsraum {room} liegt im {rng.randint(1, 6)}. Obergeschoss von Gebäude "
                f"{rng.choice('ABCD')} und bietet Platz für {seats} Personen. Ausstattung: {rng.choice(EQUIPMENT)}. "
                f"Gebucht wird er über {rng.choice(SYSTEMS)}. {rng.choice(EXTRAS)}")
        passages.append((doc_id, f"Besprechungsraum {room}", text))
        if n % 2 == 0:
            queries.append((f"r{n:02d}", rng.choice([f"Wie viele Personen passen in den Raum {room}?",
                                                      f"Raum {room} Ausstattung", f"Wo liegt der Raum {room}?"]), f"{doc_id}:2"))
    for n, (name, does, team) in enumerate(APPS):
        doc_id = f"app-{n:02d}"
        person = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        text = (f"{name} ist die Anwendung, die {does}. Fachlich verantwortlich ist die Abteilung {team}, "
                f"Ansprechperson ist {person}. Den Zugang beantragen Sie über das Berechtigungsportal.")
        passages.append((doc_id, name, text))
        queries.append((f"a{n:02d}n", f"Wer ist für {name} zuständig?", f"{doc_id}:2"))
        queries.append((f"a{n:02d}f", f"Welche Anwendung {does}?", f"{doc_id}:2"))
    for n, (city, street, plz) in enumerate(SITES):
        doc_id = f"standort-{n:02d}"
        opens, closes = rng.choice([(7, 18), (8, 17), (7, 19)])
        text = (f"Unser Standort {city} befindet sich in der Straße {street} {rng.randint(1, 80)}, {plz} {city}. "
                f"Der Empfang ist werktags von {opens} bis {closes} Uhr besetzt. Für das Gebäude zuständig ist "
                f"{rng.choice(FIRST)} {rng.choice(LAST)} aus dem Facility Management.")
        passages.append((doc_id, f"Standort {city}", text))
        queries.append((f"s{n:02d}", rng.choice([f"Adresse Standort {city}", f"Wann ist der Empfang in {city} besetzt?"]), f"{doc_id}:2"))
    OUT.mkdir(exist_ok=True)
    (OUT / "generated.passages.tsv").write_text("".join(f"{i}\t{t}\t{x}\n" for i, t, x in passages), encoding="utf-8")
    (OUT / "generated.queries.tsv").write_text("".join(f"{i}\t{q}\t{j}\n" for i, q, j in queries), encoding="utf-8")
    print(f"{len(passages)} passages, {len(queries)} queries")


if __name__ == "__main__":
    main()
