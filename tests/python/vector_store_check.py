"""Files and Vector Stores through the official openai package, unmodified.

Usage: vector_store_check.py BASE_URL PDF_PATH PDF_PAGE PDF_PHRASE QUESTION

Uploads a Markdown note and the PDF, attaches them (one with create_and_poll, a batch with
upload_and_poll), searches, reads chunks and content back, and deletes. Exits non-zero with a
message on the first failed check.
"""
import io
import sys
import time

from openai import OpenAI

from checks import check

NOTE = b"""# Garden log

## Tomatoes
The tomato bed by the south fence gets watered every Tuesday at dawn.

## Beehive
The blue beehive produced eleven kilograms of heather honey in September.
"""


def main():
    base, pdf_path, pdf_page, pdf_phrase, question = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    client = OpenAI(base_url=base, api_key="unused", max_retries=0)

    note = client.files.create(file=("garden.md", io.BytesIO(NOTE)), purpose="assistants")
    check(note.id.startswith("file-") and note.bytes == len(NOTE) and note.filename == "garden.md", f"files.create -> {note.id}")
    check(client.files.retrieve(note.id).filename == "garden.md", "files.retrieve")
    check(client.files.content(note.id).read() == NOTE, "files.content returns the bytes uploaded")
    check(note.id in [f.id for f in client.files.list()], "files.list lists it")

    store = client.vector_stores.create(name="notes", metadata={"team": "garden"})
    check(store.id.startswith("vs_") and store.name == "notes", f"vector_stores.create -> {store.id}")
    vs_file = client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=note.id, attributes={"kind": "note"})
    check(vs_file.status == "completed", f"files.create_and_poll -> {vs_file.status} {vs_file.last_error}")

    with open(pdf_path, "rb") as pdf:
        batch = client.vector_stores.file_batches.upload_and_poll(vector_store_id=store.id, files=[pdf])
    check(batch.status == "completed" and batch.file_counts.completed == 1, f"file_batches.upload_and_poll -> {batch.status} {batch.file_counts}")

    got = client.vector_stores.retrieve(store.id)
    check(got.file_counts.completed == 2 and got.file_counts.total == 2, f"vector_stores.retrieve counts {got.file_counts}")
    check(store.id in [s.id for s in client.vector_stores.list()], "vector_stores.list lists it")
    renamed = client.vector_stores.update(store.id, name="garden notes", metadata={"team": "garden", "year": "2026"})
    check(renamed.name == "garden notes" and renamed.metadata["year"] == "2026", "vector_stores.update renames")

    hits = client.vector_stores.search(vector_store_id=store.id, query="How much honey did the beehive produce?", max_num_results=3)
    top = hits.data[0]
    check(top.filename == "garden.md" and "eleven kilograms" in top.content[0].text, f"search finds the honey chunk: {top.filename} {top.content[0].text[:60]!r}")

    hits = client.vector_stores.search(vector_store_id=store.id, query=question, max_num_results=3)
    top = hits.data[0]
    extra = top.model_extra or {}
    check(pdf_phrase.lower() in top.content[0].text.lower(), f"search finds the PDF chunk: {top.content[0].text[:80]!r}")
    check(extra.get("page") == pdf_page, f"the PDF hit carries page {extra.get('page')} (want {pdf_page})")

    hits = client.vector_stores.search(vector_store_id=store.id, query="honey", filters={"type": "eq", "key": "kind", "value": "note"},
                                       extra_body={"search_mode": "keyword"})
    check(len(hits.data) > 0 and all(h.file_id == note.id for h in hits.data), "keyword search with an attribute filter")

    chunks = list(client.vector_stores.files.content(file_id=note.id, vector_store_id=store.id))
    check(len(chunks) >= 1 and "Tuesday" in "".join(c.text for c in chunks), f"files.content gives the chunks ({len(chunks)})")

    files = client.vector_stores.files.list(vector_store_id=store.id)
    check(len(files.data) == 2 and all(f.status == "completed" for f in files.data), "vector_stores.files.list")

    updated = client.vector_stores.files.update(file_id=note.id, vector_store_id=store.id, attributes={"kind": "diary"})
    check(updated.attributes == {"kind": "diary"}, "vector_stores.files.update replaces attributes")

    deleted = client.vector_stores.files.delete(file_id=note.id, vector_store_id=store.id)
    check(deleted.deleted, "vector_stores.files.delete")
    hits = client.vector_stores.search(vector_store_id=store.id, query="beehive honey", max_num_results=5)
    check(all(h.file_id != note.id for h in hits.data), "a detached file is no longer found")

    try:
        client.vector_stores.retrieve("vs_doesnotexist")
        check(False, "an unknown vector store is 404")
    except Exception as e:  # openai.NotFoundError
        check(getattr(e, "status_code", None) == 404, f"an unknown vector store is 404 ({e})")

    check(client.vector_stores.delete(store.id).deleted, "vector_stores.delete")
    check(client.files.delete(note.id).deleted, "files.delete")
    print("all vector store SDK checks passed")


if __name__ == "__main__":
    main()
