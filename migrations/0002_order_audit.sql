-- Order smoke audit.
--
-- `smoke_calls`: one row per recorded smoke call (a `snapshots` row of kind 'smoke'), written in the same
-- transaction as the snapshot: what was asked, the rail decision, the contract chosen and the result.
--
-- `order_intents` / `order_events`: the write-ahead record of every order that goes out for execution. The intent
-- is committed before placeOrder is sent and each outcome is appended after it, so a process that dies in between
-- leaves an intent without events: evidence of a possibly live order. Both tables are append-only (the triggers
-- refuse UPDATE and DELETE): the outcome of an order is its newest event, never an edited row.

CREATE TABLE order_intents (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,           -- ISO-8601 UTC, just before placeOrder
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    client_id INTEGER NOT NULL,
    simulated INTEGER NOT NULL,         -- 1 when the gateway was the built-in simulator
    orderId INTEGER NOT NULL,           -- the API order id placeOrder uses
    account TEXT,                       -- NULL: the gateway's default account
    conId INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    secType TEXT NOT NULL,
    localSymbol TEXT,
    lastTradeDateOrContractMonth TEXT,
    exchange TEXT,
    currency TEXT,
    action TEXT NOT NULL,
    totalQuantity REAL NOT NULL,
    orderType TEXT NOT NULL,
    lmtPrice REAL,
    tif TEXT NOT NULL,
    auto_cancel INTEGER NOT NULL,
    safety TEXT NOT NULL                -- JSON: the rail decision that allowed the transmit
);

CREATE TABLE order_events (
    id INTEGER PRIMARY KEY,
    intent_id INTEGER NOT NULL REFERENCES order_intents(id),
    at TEXT NOT NULL,                   -- ISO-8601 UTC
    event TEXT NOT NULL CHECK (event IN (
        'submitted',                    -- the gateway accepted the order (status: PreSubmitted, Submitted, Filled)
        'rejected',                     -- the gateway refused it (error_code, message)
        'no_answer',                    -- sent, but no status within the timeout: possibly live
        'cancel_requested',
        'cancelled',                    -- cancel confirmed: status Cancelled seen, or gone from the open orders
        'cancel_unconfirmed'            -- cancel sent, not confirmed: check the gateway
    )),
    status TEXT,                        -- the IB order status last seen
    permId INTEGER,
    error_code INTEGER,
    message TEXT
);

CREATE INDEX order_events_intent ON order_events (intent_id, id);

CREATE TRIGGER order_intents_no_update BEFORE UPDATE ON order_intents
BEGIN
    SELECT RAISE(ABORT, 'order_intents is append-only');
END;

CREATE TRIGGER order_intents_no_delete BEFORE DELETE ON order_intents
BEGIN
    SELECT RAISE(ABORT, 'order_intents is append-only');
END;

CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events
BEGIN
    SELECT RAISE(ABORT, 'order_events is append-only');
END;

CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events
BEGIN
    SELECT RAISE(ABORT, 'order_events is append-only');
END;

CREATE TABLE smoke_calls (
    snapshot_id INTEGER PRIMARY KEY REFERENCES snapshots(id),
    recorded_at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('whatif', 'blocked-transmit', 'paper-transmit')),
    whatIf INTEGER NOT NULL,            -- 1 when a what-if ran (asked for, or forced by a rail)
    transmitted INTEGER NOT NULL,       -- 1 when a real order was sent for execution
    allow_orders TEXT,                  -- ALLOW_ORDERS and IBKR_PAPER as seen (NULL: unset)
    ibkr_paper TEXT,
    port INTEGER,
    reasons TEXT NOT NULL,              -- JSON list: every reason a transmit was refused
    asset TEXT NOT NULL,                -- STK | FUT
    symbol TEXT NOT NULL,
    action TEXT NOT NULL,
    totalQuantity REAL NOT NULL,
    orderType TEXT NOT NULL,
    lmtPrice REAL,
    tif TEXT NOT NULL,
    account TEXT,
    conId INTEGER,                      -- the chosen contract (NULL when none was resolved)
    localSymbol TEXT,
    lastTradeDateOrContractMonth TEXT,
    exchange TEXT,
    contract TEXT,                      -- JSON: the qualified contract
    candidates TEXT,                    -- JSON: the futures contracts considered, each with why it was (not) chosen
    orderId INTEGER,
    permId INTEGER,
    status TEXT,
    cancelled INTEGER,                  -- NULL unless --auto-cancel had an order to cancel
    final_status TEXT,
    intent_id INTEGER REFERENCES order_intents(id),
    initMarginBefore REAL,
    initMarginChange REAL,
    initMarginAfter REAL,
    maintMarginBefore REAL,
    maintMarginChange REAL,
    maintMarginAfter REAL,
    equityWithLoanBefore REAL,
    equityWithLoanChange REAL,
    equityWithLoanAfter REAL,
    commission REAL,
    minCommission REAL,
    maxCommission REAL,
    commissionCurrency TEXT,
    warningText TEXT
);

CREATE INDEX smoke_calls_intent ON smoke_calls (intent_id);
