-- Audit store, first schema.
--
-- Every call is a row in `snapshots`. What the gateway returned (`data`) is stored once per distinct
-- content in `payloads`, keyed by the SHA-256 of its canonical JSON, so recording the same unchanged
-- state again adds one small snapshot row and nothing else. The normalized item tables hang off the
-- payload too, for the same reason.

CREATE TABLE payloads (
    hash TEXT PRIMARY KEY,          -- sha256 hex of the canonical JSON of `data`
    kind TEXT NOT NULL,
    item_count INTEGER NOT NULL,
    json TEXT NOT NULL,             -- the `data` value, canonical JSON
    first_seen_at TEXT NOT NULL
);

CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,             -- accounts | positions | orders | account | executions
    args TEXT NOT NULL,             -- canonical JSON of the arguments that shape `data`
    started_at TEXT NOT NULL,       -- ISO-8601 UTC
    recorded_at TEXT NOT NULL,      -- ISO-8601 UTC, when the call finished
    duration_ms INTEGER NOT NULL,
    connected INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    host TEXT,
    port INTEGER,
    client_id INTEGER,
    server_version INTEGER,
    accounts TEXT,                  -- JSON list of managed accounts
    simulated INTEGER NOT NULL DEFAULT 0,
    error_type TEXT,
    error_code INTEGER,
    error_message TEXT,
    payload_hash TEXT REFERENCES payloads(hash),
    envelope TEXT NOT NULL          -- the printed document minus `data`, keys in printed order
);

CREATE TABLE accounts (
    payload_hash TEXT NOT NULL REFERENCES payloads(hash),
    account TEXT NOT NULL,
    paper INTEGER NOT NULL,
    PRIMARY KEY (payload_hash, account)
);

CREATE TABLE positions (
    payload_hash TEXT NOT NULL REFERENCES payloads(hash),
    account TEXT NOT NULL,
    conId INTEGER NOT NULL,
    symbol TEXT,
    secType TEXT,
    lastTradeDateOrContractMonth TEXT,
    strike REAL,
    "right" TEXT,
    multiplier TEXT,
    exchange TEXT,
    currency TEXT,
    localSymbol TEXT,
    tradingClass TEXT,
    position REAL,
    avgCost REAL,
    PRIMARY KEY (payload_hash, account, conId)
);

CREATE TABLE orders (
    payload_hash TEXT NOT NULL REFERENCES payloads(hash),
    orderId INTEGER,
    permId INTEGER,
    clientId INTEGER,
    account TEXT,
    conId INTEGER,
    symbol TEXT,
    secType TEXT,
    localSymbol TEXT,
    action TEXT,
    totalQuantity REAL,
    orderType TEXT,
    lmtPrice REAL,
    auxPrice REAL,
    tif TEXT,
    status TEXT,
    filled REAL,
    remaining REAL,
    avgFillPrice REAL
);

CREATE TABLE account_values (
    payload_hash TEXT NOT NULL REFERENCES payloads(hash),
    account TEXT NOT NULL,
    tag TEXT NOT NULL,
    value,                          -- no declared type: a number stays a number, text stays text
    currency TEXT NOT NULL,
    modelCode TEXT NOT NULL,
    PRIMARY KEY (payload_hash, account, tag, currency, modelCode)
);

CREATE TABLE executions (
    payload_hash TEXT NOT NULL REFERENCES payloads(hash),
    execId TEXT NOT NULL,
    time TEXT,
    account TEXT,
    conId INTEGER,
    symbol TEXT,
    secType TEXT,
    localSymbol TEXT,
    side TEXT,
    shares REAL,
    price REAL,
    orderId INTEGER,
    permId INTEGER,
    clientId INTEGER,
    exchange TEXT,
    cumQty REAL,
    avgPrice REAL,
    commission REAL,
    commissionCurrency TEXT,
    realizedPNL REAL,
    PRIMARY KEY (payload_hash, execId)
);
