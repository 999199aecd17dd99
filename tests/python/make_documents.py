"""Builds the documents tests/tests/formats.rs drops into a watched folder, each with words that
say where they must be found (page, slide, sheet, chapter), with the libraries people's files
come from: python-docx, python-pptx, openpyxl, odfpy, the email package, reportlab, pypdfium2 and
img2pdf (pinned in tests/requirements.txt). An EPUB and a zip-bomb DOCX are zipped by hand.

    python make_documents.py OUT_DIR

Writes the files and OUT_DIR/expected.json: for each file, the phrases and the page each must be
cited on, and the words of the scanned PDF's source text.
"""
import email.message
import json
import sys
import zipfile
from pathlib import Path

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
expected = {}

# DOCX: a heading, a table, an explicit page break.
import docx

d = docx.Document()
d.add_heading("Budget plan", level=1)
d.add_paragraph("The zebra budget allocates money to the marina.")
t = d.add_table(rows=2, cols=2)
t.cell(0, 0).text, t.cell(0, 1).text = "Item", "Cost"
t.cell(1, 0).text, t.cell(1, 1).text = "Kayak", "420"
d.add_page_break()
d.add_heading("Walrus committee", level=2)
d.add_paragraph("The walrus committee meets on the second page.")
d.save(out / "report.docx")
expected["report.docx"] = {"zebra budget": 1, "| Kayak | 420 |": 1, "walrus committee meets": 2}

# PPTX: three slides, a word each.
from pptx import Presentation

p = Presentation()
for title, body in [("Alpha launch", "pelican feathers"), ("Beta review", "giraffe necks"), ("Gamma close", "octopus arms")]:
    s = p.slides.add_slide(p.slide_layouts[1])
    s.shapes.title.text = title
    s.placeholders[1].text = body
p.save(out / "deck.pptx")
expected["deck.pptx"] = {"pelican feathers": 1, "giraffe necks": 2, "octopus arms": 3}

# XLSX: two sheets.
import openpyxl

wb = openpyxl.Workbook()
ws = wb.active
ws.title = "Inventory"
ws.append(["Tool", "Count"])
ws.append(["hammer", 12])
ws2 = wb.create_sheet("Staff")
ws2.append(["Name", "Role"])
ws2.append(["Ada Lovelace", "analyst"])
wb.save(out / "book.xlsx")
expected["book.xlsx"] = {"| hammer | 12 |": 1, "| Ada Lovelace | analyst |": 2}

# ODT and ODS with odfpy.
from odf.opendocument import OpenDocumentSpreadsheet, OpenDocumentText
from odf.table import Table, TableCell, TableRow
from odf.text import H, P

odt = OpenDocumentText()
odt.text.addElement(H(outlinelevel=1, text="Lighthouse log"))
odt.text.addElement(P(text="The lighthouse keeper counts seventeen ships."))
odt.save(str(out / "notes.odt"))
expected["notes.odt"] = {"lighthouse keeper counts": 1}

ods = OpenDocumentSpreadsheet()
for name, rows in [("Plants", [["Plant", "Water"], ["cactus", "rarely"]]), ("Birds", [["Bird", "Song"], ["blackbird", "evening"]])]:
    table = Table(name=name)
    for row in rows:
        tr = TableRow()
        for value in row:
            cell = TableCell(valuetype="string")
            cell.addElement(P(text=value))
            tr.addElement(cell)
        table.addElement(tr)
    ods.spreadsheet.addElement(table)
ods.save(str(out / "garden.ods"))
expected["garden.ods"] = {"| cactus | rarely |": 1, "| blackbird | evening |": 2}

# EPUB, zipped by hand: two chapters in spine order (the second file first in the manifest).
container = '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>'
opf = """<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">x</dc:identifier><dc:title>Test</dc:title><dc:language>en</dc:language></metadata>
<manifest><item id="c2" href="ch2.xhtml" media-type="application/xhtml+xml"/><item id="c1" href="ch1.xhtml" media-type="application/xhtml+xml"/></manifest>
<spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>"""
chapter = '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>{0}</title></head><body><h1>{0}</h1><p>{1}</p></body></html>'
with zipfile.ZipFile(out / "novel.epub", "w") as z:
    z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
    z.writestr("META-INF/container.xml", container, zipfile.ZIP_DEFLATED)
    z.writestr("OEBPS/content.opf", opf, zipfile.ZIP_DEFLATED)
    z.writestr("OEBPS/ch1.xhtml", chapter.format("The harbor", "Ships rest in the harbor at dawn."), zipfile.ZIP_DEFLATED)
    z.writestr("OEBPS/ch2.xhtml", chapter.format("The volcano", "Smoke rises from the volcano crater."), zipfile.ZIP_DEFLATED)
expected["novel.epub"] = {"Ships rest in the harbor": 1, "Smoke rises from the volcano": 2}

# E-mail with a text attachment, which becomes its own document.
m = email.message.EmailMessage()
m["From"] = "Ada <ada@example.org>"
m["To"] = "bob@example.org"
m["Subject"] = "Quarterly numbers"
m.set_content("The penguin forecast is attached.")
m.add_attachment(b"The attachment mentions the tangerine orchard.", maintype="text", subtype="plain", filename="orchard.txt")
(out / "mail.eml").write_bytes(bytes(m))
expected["mail.eml"] = {"penguin forecast": 1, "Subject: Quarterly numbers": 1}
expected["orchard.txt"] = {"tangerine orchard": 1}

# A scanned PDF: a text PDF's page rendered at 200 dpi, wrapped as an image-only PDF.
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

scan_lines = [
    "Hearth reads scanned pages with optical character recognition.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Invoices from March show a total of 4,250 euros for office chairs.",
    "Every scanned page keeps its number so that citations stay right.",
]
c = canvas.Canvas(str(out / "source.pdf.tmp"), pagesize=A4)
c.setFont("Helvetica", 14)
for i, line in enumerate(scan_lines):
    c.drawString(72, 760 - 24 * i, line)
c.showPage()
c.save()
import img2pdf
import pypdfium2

pdf = pypdfium2.PdfDocument(str(out / "source.pdf.tmp"))
pdf[0].render(scale=200 / 72).to_pil().convert("L").save(out / "scan.png.tmp", format="PNG", dpi=(200, 200))
pdf.close()
(out / "scan.pdf").write_bytes(img2pdf.convert(str(out / "scan.png.tmp")))
(out / "source.pdf.tmp").unlink()
(out / "scan.png.tmp").unlink()
expected["scan.pdf"] = {"words": " ".join(scan_lines).split()}

# A PDF pdf-extract cannot read: its cross-reference offsets point nowhere (PDFium repairs it).
c = canvas.Canvas(str(out / "broken.pdf"), pagesize=A4)
c.setFont("Helvetica", 14)
c.drawString(72, 760, "The broken file still tells of the saffron market.")
c.showPage()
c.save()
raw = (out / "broken.pdf").read_bytes()
start = raw.rindex(b"startxref")
(out / "broken.pdf").write_bytes(raw[:start] + b"startxref\n99999999\n%%EOF\n")
expected["broken.pdf"] = {"saffron market": 1}

# A zip bomb dressed as a DOCX: 300 MiB of spaces inflate from about 300 KiB.
with zipfile.ZipFile(out / "bomb.docx", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("[Content_Types].xml", "<Types/>")
    with z.open("word/document.xml", "w") as f:
        chunk = b" " * (1 << 20)
        for _ in range(300):
            f.write(chunk)
expected["bomb.docx"] = {"error": "unpacks to more than 256 MiB"}

(out / "expected.json").write_text(json.dumps(expected, indent=1))
print("documents written:", ", ".join(sorted(p.name for p in out.iterdir())))
