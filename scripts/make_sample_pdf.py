"""Writes data/sample/returns-and-service.pdf (two pages of original text): `pip install fpdf2`, then run it."""
from pathlib import Path

from fpdf import FPDF

PAGES = [
    ("Returns", [
        "Kestrel Cycles - Returns and Service Guide (2026 edition)",
        "You may return any bike within 30 days of delivery for a full refund, as long as it has been ridden "
        "less than 100 km and is undamaged. Start a return in your account; we collect the bike free of charge.",
        "Refunds reach your original payment method within 10 working days of the bike arriving at our workshop "
        "in Leeds. Accessories can be returned unused within 60 days.",
        "Custom-built bikes (special frame colours or sizes) can be returned only if they are faulty.",
    ]),
    ("Service", [
        "The first service is free and due after 500 km or three months, whichever comes first. It includes "
        "brake and gear adjustment, a bolt check and a firmware update of the motor controller.",
        "After that we recommend a service every 2,000 km. A standard service costs 89 pounds; a full service "
        "with new chain and brake pads costs 149 pounds. Partner workshops are listed on our website.",
        "Firmware updates can also be installed at home with the Kestrel app over Bluetooth; an update takes "
        "about 12 minutes and needs the battery charged above 30 percent.",
    ]),
]

pdf = FPDF()
pdf.set_auto_page_break(True, margin=15)
for title, paragraphs in PAGES:
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    for paragraph in paragraphs:
        pdf.multi_cell(0, 6, paragraph)
        pdf.ln(3)
pdf.output(str(Path(__file__).resolve().parent.parent / "data" / "sample" / "returns-and-service.pdf"))
