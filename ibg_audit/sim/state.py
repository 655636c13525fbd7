"""Live state of the simulated gateway: accounts, positions, orders, executions, and what trading does to them.

Margin model (used for account values and what-if orders; documented in README.md):

* STK: initial and maintenance margin 25% of the absolute market value (30% for a short position).
* OPT: a long option needs no margin (its premium is paid); a short option needs its market value plus 20% of
  the strike notional, for initial and maintenance alike.
* FUT: a fixed amount per contract from the scenario (``margin.initial`` / ``margin.maintenance``); without it
  10% / 9% of the notional.
* CASH (forex): 3% initial, 2.5% maintenance of the base-currency value.

Commissions: STK USD 0.005 per share, at least 1.00 and at most 1% of the trade value; OPT 0.65 per contract, at
least 1.00; FUT 2.25 per contract; CASH 0.2 basis points of the value, at least 2.00.

Account values follow IB's definitions loosely: TotalCashValue = cash + forex balances in base currency;
NetLiquidation = TotalCashValue + stock and option market value + unrealized futures P&L;
EquityWithLoanValue = NetLiquidation - option market value; AvailableFunds = ELV - InitMarginReq;
ExcessLiquidity = ELV - MaintMarginReq; BuyingPower = 4 x AvailableFunds; Cushion = ExcessLiquidity / NLV.
"""

from __future__ import annotations

import datetime as dt
import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .contracts import Contract, build_contracts
from .scenario import Scenario, ScenarioError

ACTIONS = {"BUY": 1, "SELL": -1, "SSHORT": -1}


@dataclass
class Account:
    id: str
    base_currency: str = "USD"
    account_type: str = "INDIVIDUAL"
    cash: float = 0.0  # in base currency; forex balances are CASH positions
    realized_pnl: float = 0.0

    @property
    def paper(self) -> bool:
        return self.id.startswith("D")


@dataclass
class Position:
    account: str
    contract: Contract
    position: Decimal
    avg_cost: float  # per unit incl. multiplier, as IB reports it
    realized_pnl: float = 0.0


@dataclass
class Margins:
    initial: float
    maintenance: float
    equity_with_loan: float


@dataclass
class Order:
    """An order as the gateway keeps it; the fields echoed in openOrder/completedOrder."""

    order_id: int
    client_id: int
    perm_id: int
    account: str
    contract: Contract
    action: str
    total_quantity: Decimal
    order_type: str = "LMT"
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = "DAY"
    oca_group: str = ""
    open_close: str = ""
    origin: int = 0
    order_ref: str = ""
    outside_rth: bool = False
    hidden: bool = False
    good_after_time: str = ""
    good_till_date: str = ""
    parent_id: int = 0
    trail_stop_price: float | None = None
    trailing_percent: float | None = None
    cash_qty: float | None = None
    model_code: str = ""
    # conditional groups echoed verbatim (already wire-formatted strings)
    hedge: tuple[str, ...] = ()
    scale_extra: tuple[str, ...] = ()
    scale_price_increment: str = ""
    delta_neutral_contract: tuple[str, ...] = ()
    algo_strategy: str = ""
    algo_params: tuple[tuple[str, str], ...] = ()
    peg_bench: tuple[str, ...] = ()
    conditions: tuple[tuple[str, ...], ...] = ()
    conditions_ignore_rth: bool = False
    conditions_cancel_order: bool = False
    what_if: bool = False
    transmit: bool = True
    status: str = "PreSubmitted"
    filled: Decimal = Decimal(0)
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    commission: float | None = None
    margins: tuple[Margins, Margins, Margins] | None = None  # before, change, after (what-if only)
    what_if_commission: float | None = None
    completed_time: str = ""
    completed_status: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.total_quantity - self.filled

    @property
    def signed_quantity(self) -> Decimal:
        return self.total_quantity * ACTIONS[self.action]


@dataclass
class Execution:
    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    account: str
    contract: Contract
    side: str  # BOT / SLD
    shares: Decimal
    price: float
    time: dt.datetime  # aware, UTC
    exchange: str
    cum_qty: Decimal
    avg_price: float
    order_ref: str = ""
    commission: float = 0.0
    realized_pnl: float | None = None
    last_liquidity: int = 2


def commission_for(contract: Contract, quantity: Decimal, unit_value: float, fx: float = 1.0) -> float:
    """Commission in the contract's currency; unit_value is price x multiplier, fx its rate to base currency."""
    qty = abs(float(quantity))
    if contract.secType == "STK":
        return round(min(max(0.005 * qty, 1.0), 0.01 * qty * unit_value), 2)
    if contract.secType == "OPT":
        return round(max(0.65 * qty, 1.0), 2)
    if contract.secType == "FUT":
        return round(2.25 * qty, 2)
    return round(max(0.00002 * qty * unit_value * fx, 2.0), 2)


def position_margin(contract: Contract, quantity: Decimal, price: float, fx: float = 1.0) -> tuple[float, float]:
    """(initial, maintenance) margin of one position in base currency under the simple model above."""
    qty = float(quantity)
    value = abs(qty * price * contract.mult) * fx
    if contract.secType == "STK":
        rate = 0.25 if qty >= 0 else 0.30
        return value * rate, value * rate
    if contract.secType == "OPT":
        if qty >= 0:
            return 0.0, 0.0
        short = value + 0.2 * abs(qty) * contract.strike * contract.mult * fx
        return short, short
    if contract.secType == "FUT":
        init = contract.marginInitial if contract.marginInitial is not None else 0.10 * value / abs(qty or 1)
        maint = contract.marginMaintenance if contract.marginMaintenance is not None else 0.09 * value / abs(qty or 1)
        return init * abs(qty), maint * abs(qty)
    if contract.secType == "CASH":
        return value * 0.03, value * 0.025
    return 0.0, 0.0


class GatewayState:
    """Everything the gateway knows, built from a scenario relative to `now` (an aware UTC datetime)."""

    def __init__(self, scenario: Scenario, now: dt.datetime):
        self.scenario = scenario
        try:
            self.tz = ZoneInfo(scenario.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScenarioError(f"{scenario.source}: unknown timeZone {scenario.time_zone!r}") from None
        today = now.astimezone(self.tz).date()
        self.contracts: dict[str, Contract] = build_contracts(scenario.contracts, today, scenario.source)
        self.accounts: dict[str, Account] = {}
        for i, a in enumerate(scenario.accounts):
            with self._entry(f"accounts[{i}]"):
                self.accounts[a["id"]] = Account(
                    id=a["id"],
                    base_currency=a.get("currency", "USD"),
                    account_type=a.get("accountType", "INDIVIDUAL"),
                    cash=float(a.get("cash", 0.0)),
                    realized_pnl=float(a.get("realizedPnL", 0.0)),
                )
        self.next_valid_id = scenario.next_valid_id
        # ids derived from the date: the same scenario gives the same permIds/execIds all day long
        self._day = today.toordinal()
        self._perm_ids = itertools.count(1_000_000_000 + self._day % 10_000 * 10_000)
        self._exec_seq = itertools.count(1)
        self.positions: dict[tuple[str, int], Position] = {}
        for i, p in enumerate(scenario.positions):
            with self._entry(f"positions[{i}]"):
                c = self.contract(p["contract"], f"positions[{i}]")
                self.positions[(p["account"], c.conId)] = Position(
                    account=p["account"],
                    contract=c,
                    position=Decimal(str(p["position"])),
                    avg_cost=float(p["avgPrice"]) * c.mult,
                )
        self.open_orders: dict[int, Order] = {}  # by permId
        self.completed_orders: list[Order] = []
        self.executions: list[Execution] = []
        midnight = dt.datetime.combine(today, dt.time(), self.tz).astimezone(dt.UTC)
        for i, e in enumerate(scenario.executions):
            with self._entry(f"executions[{i}]"):
                self._scenario_execution(e, i, midnight, now)
        for i, o in enumerate(scenario.open_orders):
            with self._entry(f"openOrders[{i}]"):
                order = self._scenario_order(o, f"openOrders[{i}]")
                order.status = "Submitted"
                self.open_orders[order.perm_id] = order
        for i, o in enumerate(scenario.completed_orders):
            with self._entry(f"completedOrders[{i}]"):
                order = self._scenario_order(o, f"completedOrders[{i}]")
                order.status = o.get("status", "Cancelled")
                order.completed_status = o.get("completedStatus", order.status)
                order.completed_time = self.format_time(now - dt.timedelta(minutes=float(o.get("minutesAgo", 60))))
                self.completed_orders.append(order)

    @contextmanager
    def _entry(self, where: str):
        """Turn a bad value in one scenario entry into a ScenarioError naming the entry."""
        try:
            yield
        except ScenarioError:
            raise
        except KeyError as e:
            raise ScenarioError(f"{self.scenario.source}: {where}: missing {e}") from None
        except ArithmeticError:
            raise ScenarioError(f"{self.scenario.source}: {where}: a quantity is not a number") from None
        except (TypeError, ValueError) as e:
            raise ScenarioError(f"{self.scenario.source}: {where}: {e}") from None

    # ---- helpers ----

    def contract(self, key: str, where: str) -> Contract:
        try:
            return self.contracts[key]
        except KeyError:
            raise ScenarioError(f"{self.scenario.source}: {where}.contract {key!r} is not a contract key") from None

    def new_perm_id(self) -> int:
        return next(self._perm_ids)

    def new_exec_id(self, now: dt.datetime) -> str:
        return f"0000e0d5.{int(now.timestamp()) & 0xFFFFFFFF:08x}.{next(self._exec_seq):02d}.01"

    def format_time(self, t: dt.datetime) -> str:
        """The gateway's execution/completion time format: 'yyyymmdd hh:mm:ss <zone>' in the scenario's zone."""
        return t.astimezone(self.tz).strftime("%Y%m%d %H:%M:%S ") + self.scenario.time_zone

    @property
    def managed_accounts(self) -> list[str]:
        return list(self.accounts)

    def _scenario_order(self, o: dict, where: str) -> Order:
        c = self.contract(o["contract"], where)
        if o.get("action", "BUY") not in ACTIONS:
            raise ScenarioError(f"{self.scenario.source}: {where}.action must be one of {', '.join(ACTIONS)}")
        return Order(
            order_id=int(o.get("orderId", 0)),
            client_id=int(o.get("clientId", 0)),
            perm_id=int(o.get("permId") or self.new_perm_id()),
            account=o["account"],
            contract=c,
            action=o.get("action", "BUY"),
            total_quantity=Decimal(str(o.get("totalQuantity", 1))),
            order_type=o.get("orderType", "LMT"),
            lmt_price=None if o.get("lmtPrice") is None else float(o["lmtPrice"]),
            aux_price=None if o.get("auxPrice") is None else float(o["auxPrice"]),
            tif=o.get("tif", "DAY"),
            order_ref=o.get("orderRef", ""),
            outside_rth=bool(o.get("outsideRth", False)),
        )

    def _scenario_execution(self, e: dict, i: int, midnight: dt.datetime, now: dt.datetime) -> None:
        where = f"executions[{i}]"
        fraction = float(e.get("dayFraction", 0.5))
        if not 0 <= fraction < 1:
            raise ScenarioError(f"{self.scenario.source}: {where}.dayFraction must be in [0, 1)")
        when = midnight + (now - midnight) * fraction
        order = self._scenario_order({**e, "totalQuantity": e.get("shares", 1)}, where)
        order.action = "BUY" if e.get("side", "BOT") == "BOT" else "SELL"
        order.order_type = e.get("orderType", "MKT")
        price = float(e["price"])
        order.status = "Filled"
        order.filled = order.total_quantity
        order.avg_fill_price = order.last_fill_price = price
        order.commission = float(e.get("commission", 1.0))
        order.completed_time = self.format_time(when)
        order.completed_status = "Filled Size: " + str(order.total_quantity)
        self.completed_orders.append(order)
        self.executions.append(
            Execution(
                exec_id=f"0000e0d5.{self._day:08x}.{i + 1:02d}.01",
                order_id=order.order_id,
                client_id=order.client_id,
                perm_id=order.perm_id,
                account=order.account,
                contract=order.contract,
                side="BOT" if order.action == "BUY" else "SLD",
                shares=order.total_quantity,
                price=price,
                time=when,
                exchange=e.get("exchange", order.contract.execExchange),
                cum_qty=order.total_quantity,
                avg_price=price,
                order_ref=order.order_ref,
                commission=order.commission,
                realized_pnl=None if e.get("realizedPNL") is None else float(e["realizedPNL"]),
            )
        )

    # ---- valuation ----

    def fx_rate(self, currency: str, base: str = "USD") -> float:
        """Price of one unit of `currency` in `base`, from the scenario's forex contracts."""
        if currency == base:
            return 1.0
        for c in self.contracts.values():
            if c.secType == "CASH" and c.symbol == currency and c.currency == base:
                return c.price
            if c.secType == "CASH" and c.symbol == base and c.currency == currency and c.price:
                return 1.0 / c.price
        raise ScenarioError(f"{self.scenario.source}: no CASH contract {currency}.{base} to value {currency} in")

    def account_positions(self, account: str) -> list[Position]:
        return [p for p in self.positions.values() if p.account == account]

    def market_value(self, p: Position) -> float:
        """Position value in the contract's currency (notional for futures, as IB's portfolio shows it)."""
        return float(p.position) * p.contract.price * p.contract.mult

    def unrealized_pnl(self, p: Position) -> float:
        return self.market_value(p) - float(p.position) * p.avg_cost

    def margins(self, account: str, extra: tuple[Contract, Decimal] | None = None) -> tuple[float, float]:
        """(initial, maintenance) for an account, optionally with a hypothetical trade added."""
        quantities = {p.contract.conId: (p.contract, p.position) for p in self.account_positions(account)}
        if extra is not None:
            c, dq = extra
            old = quantities.get(c.conId, (c, Decimal(0)))[1]
            quantities[c.conId] = (c, old + dq)
        init = maint = 0.0
        base = self.accounts[account].base_currency
        for c, q in quantities.values():
            i, m = position_margin(c, q, c.price, self.fx_rate(c.currency, base))
            init += i
            maint += m
        return init, maint

    def summary(self, account: str) -> dict[str, float]:
        """The account's headline numbers in base currency."""
        acct = self.accounts[account]
        base = acct.base_currency
        totals = dict.fromkeys(("stock", "option", "futures_pnl", "fx_cash", "unrealized"), 0.0)
        for p in self.account_positions(account):
            fx = self.fx_rate(p.contract.currency, base)
            mv = self.market_value(p) * fx
            totals["unrealized"] += self.unrealized_pnl(p) * fx
            kind = p.contract.secType
            if kind == "STK":
                totals["stock"] += mv
            elif kind == "OPT":
                totals["option"] += mv
            elif kind == "FUT":
                totals["futures_pnl"] += self.unrealized_pnl(p) * fx
            elif kind == "CASH":
                totals["fx_cash"] += float(p.position) * self.fx_rate(p.contract.symbol, base)
        cash = acct.cash + totals["fx_cash"]
        nlv = cash + totals["stock"] + totals["option"] + totals["futures_pnl"]
        init, maint = self.margins(account)
        elv = nlv - totals["option"]
        gross = sum(
            abs(self.market_value(p)) * self.fx_rate(p.contract.currency, base)
            for p in self.account_positions(account)
            if p.contract.secType in ("STK", "OPT")
        )
        return {
            "TotalCashValue": cash,
            "NetLiquidation": nlv,
            "EquityWithLoanValue": elv,
            "GrossPositionValue": gross,
            "StockMarketValue": totals["stock"],
            "OptionMarketValue": totals["option"],
            "FuturesPNL": totals["futures_pnl"],
            "UnrealizedPnL": totals["unrealized"],
            "RealizedPnL": acct.realized_pnl,
            "InitMarginReq": init,
            "MaintMarginReq": maint,
            "AvailableFunds": elv - init,
            "ExcessLiquidity": elv - maint,
            "BuyingPower": 4 * (elv - init),
            "Cushion": (elv - maint) / nlv if nlv else 0.0,
        }

    def currency_ledger(self, account: str) -> dict[str, dict[str, float]]:
        """Per-currency balances (CashBalance, NetLiquidationByCurrency, ...) keyed by currency, incl. BASE."""
        acct = self.accounts[account]
        base = acct.base_currency
        ledger: dict[str, dict[str, float]] = {}

        def row(ccy: str) -> dict[str, float]:
            return ledger.setdefault(ccy, dict.fromkeys(
                ("CashBalance", "StockMarketValue", "OptionMarketValue", "FuturesPNL", "UnrealizedPnL",
                 "RealizedPnL", "NetLiquidationByCurrency"), 0.0))

        row(base)["CashBalance"] += acct.cash
        row(base)["RealizedPnL"] += acct.realized_pnl
        for p in self.account_positions(account):
            kind, ccy = p.contract.secType, p.contract.currency
            if kind == "CASH":
                row(p.contract.symbol)["CashBalance"] += float(p.position)
                continue
            key = {"STK": "StockMarketValue", "OPT": "OptionMarketValue"}.get(kind)
            if key:
                row(ccy)[key] += self.market_value(p)
            if kind == "FUT":
                row(ccy)["FuturesPNL"] += self.unrealized_pnl(p)
            row(ccy)["UnrealizedPnL"] += self.unrealized_pnl(p)
        for values in ledger.values():
            values["NetLiquidationByCurrency"] = (
                values["CashBalance"] + values["StockMarketValue"] + values["OptionMarketValue"]
                + values["FuturesPNL"]
            )
        total = dict.fromkeys(next(iter(ledger.values())), 0.0)
        for ccy, values in ledger.items():
            fx = self.fx_rate(ccy, base)
            for k, v in values.items():
                total[k] += v * fx
        ledger["BASE"] = total
        return ledger

    # ---- orders ----

    def is_marketable(self, order: Order) -> bool:
        price = order.contract.price
        if order.order_type == "MKT":
            return True
        if order.order_type == "LMT" and order.lmt_price is not None:
            return order.lmt_price >= price if order.action == "BUY" else order.lmt_price <= price
        return False

    def what_if(self, order: Order) -> None:
        """Fill in the margin effect and commission of `order` without changing anything."""
        acct = order.account
        s = self.summary(acct)
        before = Margins(s["InitMarginReq"], s["MaintMarginReq"], s["EquityWithLoanValue"])
        init, maint = self.margins(acct, (order.contract, order.signed_quantity))
        fx = self.fx_rate(order.contract.currency, self.accounts[acct].base_currency)
        c = order.contract
        commission = commission_for(c, order.total_quantity, c.price * c.mult, fx)
        after = Margins(init, maint, before.equity_with_loan - commission)
        change = Margins(after.initial - before.initial, after.maintenance - before.maintenance, -commission)
        order.margins = (before, change, after)
        order.what_if_commission = commission

    def fill(self, order: Order, now: dt.datetime) -> Execution:
        """Fill the whole remaining quantity at the market price; update position, cash and P&L."""
        c = order.contract
        price = c.price
        dq = order.remaining * ACTIONS[order.action]
        fx = self.fx_rate(c.currency, self.accounts[order.account].base_currency)
        commission = commission_for(c, order.remaining, price * c.mult, fx)
        acct = self.accounts[order.account]
        key = (order.account, c.conId)
        pos = self.positions.get(key) or Position(order.account, c, Decimal(0), 0.0)
        old = pos.position
        realized = None
        unit = price * c.mult
        if old == 0 or (old > 0) == (dq > 0):
            pos.avg_cost = (float(old) * pos.avg_cost + float(dq) * unit + commission) / float(old + dq)
        else:
            closed = min(abs(dq), abs(old))
            realized = round(float(closed) * (unit - pos.avg_cost) * (1 if old > 0 else -1) - commission, 2)
            if abs(dq) > abs(old):
                pos.avg_cost = unit
        pos.position = old + dq
        pos.realized_pnl += realized or 0.0
        self.positions[key] = pos
        if c.secType == "FUT":  # futures settle in cash: only realized P&L and commission move it
            acct.cash += (realized if realized is not None else -commission) * fx
        else:  # a forex trade's own-currency side is the CASH position, so cash moves by the quote side
            acct.cash -= (float(dq) * unit + commission) * fx
        acct.realized_pnl += (realized or 0.0) * fx
        order.filled = order.total_quantity
        order.avg_fill_price = order.last_fill_price = price
        order.commission = commission
        order.status = "Filled"
        order.completed_time = self.format_time(now)
        order.completed_status = f"Filled Size: {order.total_quantity}"
        execution = Execution(
            exec_id=self.new_exec_id(now),
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            account=order.account,
            contract=c,
            side="BOT" if dq > 0 else "SLD",
            shares=abs(dq),
            price=price,
            time=now,
            exchange=c.execExchange,
            cum_qty=order.total_quantity,
            avg_price=price,
            order_ref=order.order_ref,
            commission=commission,
            realized_pnl=realized,
        )
        self.executions.append(execution)
        self.open_orders.pop(order.perm_id, None)
        self.completed_orders.append(order)
        return execution

    def cancel(self, order: Order, now: dt.datetime) -> None:
        order.status = "Cancelled"
        order.completed_time = self.format_time(now)
        order.completed_status = "Cancelled by Trader"
        self.open_orders.pop(order.perm_id, None)
        self.completed_orders.append(order)

    def find_open_order(self, client_id: int, order_id: int) -> Order | None:
        for o in self.open_orders.values():
            if o.client_id == client_id and o.order_id == order_id:
                return o
        return None
