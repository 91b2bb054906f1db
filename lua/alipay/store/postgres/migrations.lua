-- The numbered schema migrations of the PostgreSQL store, in order: the
-- same numbers, names and tables as store/sqlite/migrations.lua (specs
-- compare the two lists), in PostgreSQL's types. The driver
-- (store/postgres/init.lua) applies the ones a database lacks in one
-- transaction, under an advisory lock so that two processes opening a new
-- database migrate it once, and records each number reached in the
-- alipay_schema table in that same transaction.
--
-- Types: times are BIGINT (Unix seconds; next_attempt_at is Unix
-- milliseconds, past 32 bits), flags INTEGER 0/1 as in
-- SQLite (the same statements compute with them: attempts + checked).
-- campaigns.seq stands for SQLite's implicit rowid: the insertion order
-- that breaks ties of created_at in campaign_list.
--
-- Rules: never edit or reorder a released entry; append a new one, and
-- append its SQLite twin in the same change. Every table and index of the
-- store is created here, the record of the migrations too (.record: the
-- driver creates it, under the migration lock, before it reads it).
return {
  record = [[
    CREATE TABLE IF NOT EXISTS alipay_schema (
      version    INTEGER PRIMARY KEY,   -- one row per migration applied
      name       TEXT NOT NULL,
      applied_at BIGINT NOT NULL        -- Unix seconds
    )]],
  {
    version = 1,
    name = "001_templates_bindings_meta",
    statements = {
      [[CREATE TABLE meta (
          key   TEXT PRIMARY KEY,
          value TEXT NOT NULL
        )]],
      [[CREATE TABLE templates (
          channel      TEXT NOT NULL,
          id           TEXT NOT NULL,
          name         TEXT,
          keywords     TEXT NOT NULL,            -- a JSON array of keyword names, in order
          kind         TEXT NOT NULL CHECK (kind IN ('alipaylife', 'alipaymini')),
          library_id   TEXT,
          status       TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'invalid')),
          invalid_code TEXT,
          invalid_at   BIGINT,
          imported_at  BIGINT NOT NULL,
          PRIMARY KEY (channel, id)
        )]],
      [[CREATE TABLE bindings (
          userid     TEXT NOT NULL,
          channel    TEXT NOT NULL,
          alipay_id  TEXT NOT NULL,
          id_type    TEXT NOT NULL CHECK (id_type IN ('user_id', 'open_id')),
          updated_at BIGINT NOT NULL,
          PRIMARY KEY (userid, channel)
        )]],
      [[CREATE INDEX bindings_by_channel ON bindings (channel, userid)]],
    },
  },
  {
    version = 2,
    name = "002_campaigns",
    statements = {
      [[CREATE TABLE campaigns (
          id           TEXT PRIMARY KEY,
          seq          BIGINT GENERATED ALWAYS AS IDENTITY, -- SQLite's rowid: insertion order
          channel      TEXT NOT NULL,
          template     TEXT NOT NULL,
          kind         TEXT NOT NULL CHECK (kind IN ('alipaylife', 'alipaymini')),
          spec         TEXT NOT NULL,       -- JSON: the audience as described (never its rows), data, page, policy
          status       TEXT NOT NULL CHECK (status IN ('importing', 'created', 'running', 'completed', 'stopped')),
          stop_reason  TEXT,
          runner       TEXT,                -- host/pid/token of the process that runs it now
          heartbeat_at BIGINT,              -- last sign of life of that runner
          total        INTEGER NOT NULL DEFAULT 0,
          created_at   BIGINT NOT NULL,
          started_at   BIGINT,
          finished_at  BIGINT
        )]],
      [[CREATE TABLE campaign_recipients (
          campaign        TEXT NOT NULL,
          line            INTEGER NOT NULL,  -- the audience line (or list index): every input line has a row
          userid          TEXT,              -- the business user id, when the audience gave one
          id_type         TEXT CONSTRAINT campaign_recipients_id_type CHECK (id_type IN ('user_id', 'open_id')),
          alipay_id       TEXT,
          vars            TEXT,              -- JSON object: the line's values for {column} placeholders
          status          TEXT NOT NULL
            CHECK (status IN ('pending', 'inflight', 'sent', 'failed', 'skipped', 'unknown')),
          checked         INTEGER NOT NULL DEFAULT 1 CHECK (checked IN (0, 1)), -- 0: subscription still to query
          dup_of          INTEGER,           -- the line this one repeats (then status is skipped)
          code            TEXT,
          sub_code        TEXT,
          msg             TEXT,
          attempts        INTEGER NOT NULL DEFAULT 0, -- send requests that left
          tries           INTEGER NOT NULL DEFAULT 0, -- failures that count toward policy.max_attempts
          uncertain       INTEGER NOT NULL DEFAULT 0 CHECK (uncertain IN (0, 1)), -- 1: may have been delivered
          next_attempt_at BIGINT NOT NULL DEFAULT 0,  -- Unix milliseconds: not before (backoff)
          updated_at      BIGINT NOT NULL,
          PRIMARY KEY (campaign, line)
        )]],
      -- One live row per recipient: duplicates are found by this index.
      [[CREATE UNIQUE INDEX campaign_recipients_once
          ON campaign_recipients (campaign, id_type, alipay_id) WHERE dup_of IS NULL AND alipay_id IS NOT NULL]],
      -- Pending rows in line order (the send queue), and counts by status.
      [[CREATE INDEX campaign_recipients_by_status ON campaign_recipients (campaign, status, line)]],
    },
  },
  {
    version = 3,
    name = "003_lease_tokens_unknown_reasons",
    -- Fencing (docs/messaging.md §6.4), as SQLite's 003. The UPDATE finds
    -- nothing in a database made by this driver (it starts at 3); it is
    -- kept so that the two lists stay the same migrations.
    statements = {
      [[ALTER TABLE campaigns ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0]],
      [[ALTER TABLE campaign_recipients ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0]],
      [[ALTER TABLE campaign_recipients ADD COLUMN unknown_reason TEXT CHECK (unknown_reason IS NULL OR unknown_reason
          IN ('timeout', 'reset', 'truncated', 'http_5xx', 'unverified', 'runner_died', 'superseded', 'interrupted'))]],
      [[UPDATE campaign_recipients SET unknown_reason = CASE
          WHEN code = 'INTERRUPTED' THEN 'runner_died'
          WHEN code = 'HTTP' AND sub_code LIKE '5__' THEN 'http_5xx'
          WHEN code = 'TRANSPORT' AND sub_code = 'timeout' THEN 'timeout'
          WHEN code = 'SIGNATURE' THEN 'unverified'
          ELSE NULL END
        WHERE status = 'unknown']],
    },
  },
  {
    version = 4,
    name = "004_crowd_recipients",
    -- A campaign whose audience is a crowd (docs/messaging.md §6.2) stores one
    -- row for the crowd: id_type 'crowd', alipay_id the crowd code. SQLite
    -- rebuilds its table to change the CHECK; PostgreSQL replaces the
    -- constraint in place (002 named it for this).
    statements = {
      [[ALTER TABLE campaign_recipients DROP CONSTRAINT campaign_recipients_id_type]],
      [[ALTER TABLE campaign_recipients ADD CONSTRAINT campaign_recipients_id_type
          CHECK (id_type IN ('user_id', 'open_id', 'crowd'))]],
    },
  },
}
