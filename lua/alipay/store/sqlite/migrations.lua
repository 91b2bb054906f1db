-- The numbered schema migrations of the SQLite store, in order. The SQLite
-- driver (store/sqlite/init.lua) applies the ones a file lacks, all in one
-- BEGIN IMMEDIATE transaction, and records the number reached in PRAGMA
-- user_version in that same transaction: a crash leaves the old version or
-- the new one, never half of one.
--
-- Why user_version is the record: the lua-alipay before numbered migrations
-- already wrote it (version 1 = migration 001), so its files upgrade without
-- guessing, and it refuses a file whose user_version it does not know, so an
-- older lua-alipay never misreads a newer file.
--
-- Rules: never edit or reorder a released entry; append a new one. Every
-- table and index of the store is created here and nowhere else.
return {
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
          invalid_at   INTEGER,
          imported_at  INTEGER NOT NULL,
          PRIMARY KEY (channel, id)
        )]],
      [[CREATE TABLE bindings (
          userid     TEXT NOT NULL,
          channel    TEXT NOT NULL,
          alipay_id  TEXT NOT NULL,
          id_type    TEXT NOT NULL CHECK (id_type IN ('user_id', 'open_id')),
          updated_at INTEGER NOT NULL,
          PRIMARY KEY (userid, channel)
        )]],
      [[CREATE INDEX bindings_by_channel ON bindings (channel, userid)]],
    },
  },
  {
    version = 2,
    name = "002_campaigns",
    -- IF NOT EXISTS: before this migration existed, the campaign code created
    -- these very tables itself on a version-1 file. Such a file keeps them
    -- and its rows; a file that never ran a campaign gets them here.
    statements = {
      [[CREATE TABLE IF NOT EXISTS campaigns (
          id           TEXT PRIMARY KEY,
          channel      TEXT NOT NULL,
          template     TEXT NOT NULL,
          kind         TEXT NOT NULL CHECK (kind IN ('alipaylife', 'alipaymini')),
          spec         TEXT NOT NULL,       -- JSON: the audience as described (never its rows), data, page, policy
          status       TEXT NOT NULL CHECK (status IN ('importing', 'created', 'running', 'completed', 'stopped')),
          stop_reason  TEXT,
          runner       TEXT,                -- host/pid/token of the process that runs it now
          heartbeat_at INTEGER,             -- last sign of life of that runner
          total        INTEGER NOT NULL DEFAULT 0,
          created_at   INTEGER NOT NULL,
          started_at   INTEGER,
          finished_at  INTEGER
        )]],
      [[CREATE TABLE IF NOT EXISTS campaign_recipients (
          campaign        TEXT NOT NULL,
          line            INTEGER NOT NULL,  -- the audience line (or list index): every input line has a row
          userid          TEXT,              -- the business user id, when the audience gave one
          id_type         TEXT CHECK (id_type IN ('user_id', 'open_id')),
          alipay_id       TEXT,
          vars            TEXT,              -- JSON object: the line's values for {column} placeholders
          status          TEXT NOT NULL
            CHECK (status IN ('pending', 'inflight', 'sent', 'failed', 'skipped', 'unknown')),
          checked         INTEGER NOT NULL DEFAULT 1, -- 0: the mini-program subscription is still to be queried
          dup_of          INTEGER,           -- the line this one repeats (then status is skipped)
          code            TEXT,
          sub_code        TEXT,
          msg             TEXT,
          attempts        INTEGER NOT NULL DEFAULT 0, -- send requests that left
          tries           INTEGER NOT NULL DEFAULT 0, -- failures that count toward policy.max_attempts
          uncertain       INTEGER NOT NULL DEFAULT 0, -- 1: an earlier attempt may have been delivered
          next_attempt_at INTEGER NOT NULL DEFAULT 0, -- Unix milliseconds: not before (backoff)
          updated_at      INTEGER NOT NULL,
          PRIMARY KEY (campaign, line)
        )]],
      -- One live row per recipient: duplicates are found by this index.
      [[CREATE UNIQUE INDEX IF NOT EXISTS campaign_recipients_once
          ON campaign_recipients (campaign, id_type, alipay_id) WHERE dup_of IS NULL AND alipay_id IS NOT NULL]],
      -- Pending rows in line order (the send queue), and counts by status.
      [[CREATE INDEX IF NOT EXISTS campaign_recipients_by_status
          ON campaign_recipients (campaign, status, line)]],
    },
  },
  {
    version = 3,
    name = "003_lease_tokens_unknown_reasons",
    -- Fencing (docs/messaging.md §6.4): every claim of a campaign increments
    -- campaigns.lease_token; a row marked inflight records the token it was
    -- marked under, and only that token's runner may settle it. Rows of a file
    -- from before start at 0, the token no run holds. unknown_reason says why
    -- an unknown row is unknown (the names of alipay.campaign.outcome).
    statements = {
      [[ALTER TABLE campaigns ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0]],
      [[ALTER TABLE campaign_recipients ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0]],
      [[ALTER TABLE campaign_recipients ADD COLUMN unknown_reason TEXT CHECK (unknown_reason IS NULL OR unknown_reason
          IN ('timeout', 'reset', 'truncated', 'http_5xx', 'unverified', 'runner_died', 'superseded', 'interrupted'))]],
      -- Unknown rows written before reasons existed: the reason their stored
      -- code proves; NULL (shown as "unrecorded") where it proves nothing.
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
    -- cannot change a CHECK in place, so the table is rebuilt with every row
    -- and column as it was, and its two indexes made again.
    statements = {
      [[CREATE TABLE campaign_recipients_004 (
          campaign        TEXT NOT NULL,
          line            INTEGER NOT NULL,
          userid          TEXT,
          id_type         TEXT CHECK (id_type IN ('user_id', 'open_id', 'crowd')),
          alipay_id       TEXT,              -- the Alipay id, or the crowd code (id_type crowd)
          vars            TEXT,
          status          TEXT NOT NULL
            CHECK (status IN ('pending', 'inflight', 'sent', 'failed', 'skipped', 'unknown')),
          checked         INTEGER NOT NULL DEFAULT 1,
          dup_of          INTEGER,
          code            TEXT,
          sub_code        TEXT,
          msg             TEXT,
          attempts        INTEGER NOT NULL DEFAULT 0,
          tries           INTEGER NOT NULL DEFAULT 0,
          uncertain       INTEGER NOT NULL DEFAULT 0,
          next_attempt_at INTEGER NOT NULL DEFAULT 0,
          updated_at      INTEGER NOT NULL,
          lease_token     INTEGER NOT NULL DEFAULT 0,
          unknown_reason  TEXT CHECK (unknown_reason IS NULL OR unknown_reason
            IN ('timeout', 'reset', 'truncated', 'http_5xx', 'unverified', 'runner_died', 'superseded', 'interrupted')),
          PRIMARY KEY (campaign, line)
        )]],
      [[INSERT INTO campaign_recipients_004 (campaign, line, userid, id_type, alipay_id, vars, status, checked, dup_of,
          code, sub_code, msg, attempts, tries, uncertain, next_attempt_at, updated_at, lease_token, unknown_reason)
        SELECT campaign, line, userid, id_type, alipay_id, vars, status, checked, dup_of, code, sub_code, msg, attempts,
          tries, uncertain, next_attempt_at, updated_at, lease_token, unknown_reason FROM campaign_recipients]],
      [[DROP TABLE campaign_recipients]],
      [[ALTER TABLE campaign_recipients_004 RENAME TO campaign_recipients]],
      [[CREATE UNIQUE INDEX campaign_recipients_once
          ON campaign_recipients (campaign, id_type, alipay_id) WHERE dup_of IS NULL AND alipay_id IS NOT NULL]],
      [[CREATE INDEX campaign_recipients_by_status
          ON campaign_recipients (campaign, status, line)]],
    },
  },
}
