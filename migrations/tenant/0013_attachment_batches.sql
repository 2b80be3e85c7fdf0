-- Attachments, continued (docs/attachments.md).
--
-- Several files sent in one upload share its key: `upload_key` is the random value the
-- upload form carried, `upload_part` the file's place in that upload (1, 2, ...). A
-- retried upload with the same key is answered with what is already stored instead of
-- storing it twice; the unique index makes two racing copies of one upload store once.
ALTER TABLE attachments ADD COLUMN upload_key TEXT;
ALTER TABLE attachments ADD COLUMN upload_part INTEGER;
CREATE UNIQUE INDEX attachments_by_upload ON attachments (upload_key, upload_part)
    WHERE upload_key IS NOT NULL;

-- An image's thumbnail: its own encrypted object, with its own key and digest. NULL
-- when the file is no image or its thumbnail could not be made.
ALTER TABLE attachments ADD COLUMN thumbnail_object TEXT;
ALTER TABLE attachments ADD COLUMN thumbnail_key BLOB;
ALTER TABLE attachments ADD COLUMN thumbnail_sha256 TEXT;

-- A deleted attachment's objects stay in the store for the retention for deleted
-- records; this is set when the sweep (or an erasure) has removed them.
ALTER TABLE attachments ADD COLUMN objects_removed_at TEXT;
CREATE INDEX attachments_deleted ON attachments (deleted_at)
    WHERE deleted_at IS NOT NULL AND objects_removed_at IS NULL;
