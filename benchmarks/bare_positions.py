"""The baseline for the dump benchmark: the ib_async script a trader would write to print positions as JSON.

Usage: bare_positions.py PORT CLIENT_ID
"""

import json
import sys

from ib_async import IB

ib = IB()
ib.connect("127.0.0.1", int(sys.argv[1]), clientId=int(sys.argv[2]), readonly=True, timeout=10)
positions = [
    {
        "account": p.account, "conId": p.contract.conId, "symbol": p.contract.symbol, "secType": p.contract.secType,
        "lastTradeDateOrContractMonth": p.contract.lastTradeDateOrContractMonth, "strike": p.contract.strike,
        "right": p.contract.right, "multiplier": p.contract.multiplier, "exchange": p.contract.exchange,
        "currency": p.contract.currency, "localSymbol": p.contract.localSymbol,
        "tradingClass": p.contract.tradingClass, "position": p.position, "avgCost": p.avgCost,
    }
    for p in ib.positions()
]
print(json.dumps(positions, indent=2))
ib.disconnect()
