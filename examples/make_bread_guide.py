"""Make examples/bread-guide.pdf, the sample document of the README's quickstart.

The text below was written for hearth and is under the repository's license (Apache-2.0). Each
section is one page, so a question about one topic is answered from, and cited as, one page.
Regenerate with reportlab (PyPI) in the repository's virtual environment:

    .venv/bin/pip install reportlab==5.1.0
    .venv/bin/python examples/make_bread_guide.py

reportlab writes the creation date and a random document id into the file; `invariant=1` keeps
both fixed, so the same script and reportlab version give the same bytes.
"""

from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

PAGES = [
    (
        "A Small Guide to Hearth Bread: the Starter",
        [
            "A sourdough starter is a mixture of flour and water in which wild yeast and lactic acid "
            "bacteria live together. The yeast makes the gas that raises the dough; the bacteria make "
            "the acids that give sourdough its sour taste and help the loaf keep.",
            "To begin a starter, mix 50 grams of whole rye flour with 50 grams of water in a clean jar "
            "and leave it loosely covered at room temperature. Every day, discard half of it and feed "
            "the rest with another 50 grams of flour and 50 grams of water.",
            "After five to seven days the starter is ready when it doubles in volume within six hours "
            "of a feeding and smells pleasantly sour, like yoghurt. A ready starter floats in water. "
            "Keep it in the refrigerator between bakes and feed it once a week.",
        ],
    ),
    (
        "Mixing and Shaping the Dough",
        [
            "A simple country loaf uses 500 grams of bread flour, 350 grams of water, 100 grams of "
            "active starter and 10 grams of salt. The water is 70 percent of the flour's weight; "
            "bakers call this the hydration of the dough.",
            "Mix the flour and water first and let them rest for thirty minutes; this rest is called "
            "the autolyse. Then add the starter and the salt, and fold the dough over itself every "
            "half hour for the first two hours of the bulk fermentation.",
            "Bulk fermentation ends when the dough has grown by about half and shows bubbles at the "
            "edges, usually after four to six hours at 24 degrees Celsius. Shape the dough into a "
            "tight round, place it in a floured basket and let it proof overnight in the refrigerator.",
        ],
    ),
    (
        "Baking the Loaf",
        [
            "Bake the loaf in a cast iron pot with a lid, which traps the steam from the dough and "
            "lets the crust stay soft while the bread expands. Preheat the oven and the pot to "
            "250 degrees Celsius for 45 minutes before baking.",
            "Turn the cold dough out onto baking paper, cut a slash across the top with a razor "
            "blade, and lower it into the hot pot. Bake for 20 minutes with the lid on, then remove "
            "the lid, lower the oven to 230 degrees Celsius and bake for another 25 minutes until "
            "the crust is deep brown.",
            "The loaf is done when its inside reaches 96 degrees Celsius or it sounds hollow when "
            "tapped underneath. Let it cool on a rack for at least one hour before cutting: the crumb "
            "is still setting while it cools.",
        ],
    ),
]


def main() -> None:
    out = Path(__file__).resolve().parent / "bread-guide.pdf"
    styles = getSampleStyleSheet()
    story = []
    for i, (title, paragraphs) in enumerate(PAGES):
        if i:
            story.append(PageBreak())
        story.append(Paragraph(title, styles["Title"]))
        story.append(Spacer(1, 12))
        for text in paragraphs:
            story.append(Paragraph(text, styles["BodyText"]))
            story.append(Spacer(1, 8))
    doc = SimpleDocTemplate(
        str(out),
        pagesize=A4,
        title="A Small Guide to Hearth Bread",
        author="the hearth project",
        subject="the sample document of hearth's quickstart",
        invariant=1,
    )
    doc.build(story)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
