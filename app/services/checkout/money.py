"""ISO 4217 currencies and their minor units (CNY 2, JPY 0, KWD 3): money is an integer count
of minor units, and ``major_units`` turns it into the exact Decimal amount."""

from __future__ import annotations

from decimal import Decimal

_ACTIVE_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP
DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD
MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD
SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS
VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
""".split()

_NOT_TWO = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}

CURRENCY_MINOR_UNITS: dict[str, int] = {code: _NOT_TWO.get(code, 2) for code in _ACTIVE_CODES}


def major_units(amount: int, currency: str) -> Decimal:
    """An integer amount of minor units as an exact Decimal of major units."""
    return Decimal(amount).scaleb(-CURRENCY_MINOR_UNITS[currency])


def decimal_text(value: Decimal) -> str:
    """A Decimal on the wire: plain notation, no trailing zeros (1.500000 -> "1.5",
    1E+1 -> "10", 0.2500 -> "0.25"), as an admin would write it."""
    return format(value.normalize(), "f")
