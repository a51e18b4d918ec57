"""The financial statements a question names, and the chunks that stand in them (issue 33).

"What did Apple spend on property and equipment in Q3 2023, per the cash flow statement?" names the page to
read: the statement's. Retrieval alone rarely finds it first: the statement's rows are figures under a title
only its first chunk carries, while the notes and the management's discussion say "property and equipment"
in sentences. So ingest makes a statement's printed title the innermost section of the chunks under it
(:func:`statement_titles`, ``ingest.identity``; kept out of the context line retrieval reads: :func:`read_section`),
and a question that names a statement (:func:`named_statements`: "the balance sheet", "statement of operations",
"P&L", "现金流量表") reads the chunks of that statement first (``rag.retrieve``; ``Settings.route_statements``).
A question that names none but asks for a line item a statement prints (:func:`line_item_statements`: "total
assets", "capital expenditures") reads the best chunk of that statement first (``Settings.line_item_leads``).

Hand-written: no library we have knows what a financial statement is called. The vocabulary is the
accounting standards' (US GAAP, IFRS, China's 企业会计准则), not any one filing's, and lives in this module only.
"""

from __future__ import annotations

import re

# A statement's title as a page prints it, alone on its line: "CONDENSED CONSOLIDATED STATEMENTS OF CASH FLOWS
# (Unaudited)", "Consolidated Balance Sheets", "合并资产负债表", and the kind each title is. A line that goes on
# past the title's period and parentheses (a page number in an index, a sentence) is no title.
_PARENTHESES = r"(?:\s*\([^()]{1,100}\)|\s*[-–—]\s*continued|\s*,?\s*continued)*"  # "(Unaudited)", "(In millions)"
# "... for the years ended December 31, 2023", "Years Ended June 30", "as of": the period a title may run on with.
_PERIOD_TAIL = (r"(?:\s*,?\s+(?:for\s+the\s+)?(?:(?:three|six|nine|twelve)(?:\s+and\s+\w+)?\s+months"
                r"|(?:fiscal\s+)?years?|quarters?|periods?)\s+end(?:ed|ing)\b[^()]*|\s*,?\s+as\s+of\b[^()]*)?")
_TITLE = re.compile(
    r"^(?:(?:condensed|consolidated|combined|interim|unaudited|group)\s+){0,3}"
    r"(?:statements?\s+of\s+(?:consolidated\s+)?(?P<what>[a-z'’()\s]+?)|(?P<balance>balance\s+sheets?)"
    r"|(?P<named>(?:comprehensive\s+)?income|cash\s+flows?)\s+statements?)"  # Microsoft's "INCOME STATEMENTS"
    + _PERIOD_TAIL + _PARENTHESES + r"\s*$", re.IGNORECASE)
_WHAT = [  # what follows "statements of", in the order it is tested
    ("income", re.compile(r"^(?:operations|income|earnings|(?:net\s+)?loss)"
                          r"(?:\s+and\s+comprehensive\s+(?:income|loss)(?:\s*\(loss\))?)?(?:\s*\(loss\))?$")),
    ("comprehensive income", re.compile(r"^comprehensive\s+(?:income|loss|earnings)(?:\s*\(loss\))?$")),
    ("balance sheet", re.compile(r"^financial\s+(?:position|condition)$")),
    ("cash flows", re.compile(r"^cash\s+flows?$")),
    ("equity", re.compile(r"^(?:changes\s+in\s+)?(?:(?:stockholders|shareholders|shareowners|owners)['’]?\s+)?"
                          r"(?:equity|deficit)(?:\s*\(deficit\))?$")),
]
_CHINESE_TITLE = re.compile(r"^(?:合并及?)?(?:母公司)?(资产负债表|利润表|损益表|现金流量表|所有者权益变动表|股东权益变动表)"
                            r"(?:[(（](?:续|未经审计)[)）])?$")
_CHINESE_KIND = {"资产负债表": "balance sheet", "利润表": "income", "损益表": "income", "现金流量表": "cash flows",
                 "所有者权益变动表": "equity", "股东权益变动表": "equity"}
INDEX_KINDS = 3  # a page with titles of this many kinds lists them: an index
INDEX_NEIGHBOURS = 2  # a title with another among the lines this near is an index's entry (page numbers aside)
_SMALL_CAPS = re.compile(r"\b([A-Z]) (?=[A-Z]{2,}\b)")  # "C ONSOLIDATED B ALANCE S HEETS": small capitals as read
_PAGE_NUMBER_AFTER = re.compile(r"(?:(?:19|20)\d\d|\d{1,2}),?\s+\d{1,3}$")  # "... and 2017 52": an index's page

# How a question names a statement. Each kind's names; "comprehensive income" before "income",
# whose "income statement" it would otherwise hold.
_NAMED = [
    ("comprehensive income", re.compile(r"statements?\s+of\s+comprehensive\s+(?:income|loss)"
                                        r"|comprehensive\s+income\s+statement", re.IGNORECASE)),
    ("income", re.compile(r"\bincome\s+statements?\b|\bstatements?\s+of\s+(?:consolidated\s+)?(?:operations|income|"
                          r"earnings)\b|\bp\s*&\s*l\b|\bprofit\s+(?:and|&)\s+loss\b|\bearnings\s+statements?\b|"
                          r"利润表|损益表", re.IGNORECASE)),
    ("balance sheet", re.compile(r"\bbalance\s+sheets?\b|\bstatements?\s+of\s+financial\s+(?:position|condition)\b|"
                                 r"资产负债表", re.IGNORECASE)),
    ("cash flows", re.compile(r"\bcash[\s-]+flows?\s+statements?\b|\bstatements?\s+of\s+(?:consolidated\s+)?cash\s+"
                              r"flows?\b|现金流量表", re.IGNORECASE)),
    ("equity", re.compile(r"\bstatements?\s+of\s+(?:changes\s+in\s+)?(?:(?:stockholders|shareholders|shareowners)['’]?"
                          r"\s+)?equity\b|\bequity\s+statements?\b|所有者权益变动表|股东权益变动表", re.IGNORECASE)),
]


def statement_kind(line: str) -> str | None:
    """The kind of financial statement ``line`` is the title of ("income", "balance sheet", "cash flows",
    "comprehensive income", "equity"), or None: a line that is not one such title alone."""
    line = _SMALL_CAPS.sub(r"\1", " ".join(line.split()))
    if not line or len(line) > 200:
        return None
    if match := _CHINESE_TITLE.match(line.replace(" ", "")):
        return _CHINESE_KIND[match.group(1)]
    if not (match := _TITLE.match(line)) or _PAGE_NUMBER_AFTER.search(line):
        return None
    if match.group("balance"):
        return "balance sheet"
    what = " ".join((match.group("what") or match.group("named")).lower().split())
    return next((kind for kind, pattern in _WHAT if pattern.match(what)), None)


def section_statement(section: str | None) -> str | None:
    """The kind of statement a chunk's section path ends in ("... > Item 1 > CONSOLIDATED BALANCE SHEETS")."""
    return statement_kind(section.rsplit(" > ", 1)[-1]) if section else None  # ingest.identity's separator


def read_section(section: str) -> str:
    """The section as the context line gives it to retrieval and the reranker: without a statement's title at its
    end. Read before every row of a statement, the title lowered the statement's page for a question that does not
    name it (BENCHMARKS.md); the title stays the section people see and the routing reads."""
    if not section_statement(section):
        return section
    return section.rsplit(" > ", 1)[0] if " > " in section else ""


def without_statement_names(question: str) -> str:
    """``question`` without the words that name a statement ("What did Apple spend on equipment, per the ?"): once
    the statement is read first, its name would score its title and header rows as the answer."""
    for _, pattern in _NAMED:
        question = pattern.sub(" ", question)
    return " ".join(question.split())


def named_statements(question: str) -> frozenset[str]:
    """The kinds of statement ``question`` names ("per the cash flow statement", "Base the answer on the balance
    sheet", "根据现金流量表"); empty when it names none."""
    named = set()
    for kind, pattern in _NAMED:  # in order: a name found is taken out before the next kind's are sought
        if pattern.search(question):
            named.add(kind)
            question = pattern.sub(" ", question)
    return frozenset(named)


# The line items each statement prints, as the accounting standards name them (US GAAP, IFRS, 企业会计准则): a
# question that asks for one ("What were Apple's total assets?") asks for a figure its statement holds, though it
# names no statement. Only items one statement owns: bare "sales" or "income taxes" are as often the notes' words,
# and "turnover" (IFRS's revenue) is as often a staff's or an inventory's.
_LINE_ITEMS = [
    ("income", re.compile(
        r"\b(?:revenues?|net\s+sales|cost\s+of\s+(?:sales|revenues?|goods\s+sold)|gross\s+(?:margin|profit)|"
        r"operating\s+(?:income|expenses?|profit|loss|costs?)|research\s+and\s+development|r\s*&\s*d|"
        r"selling,?\s+general|sg\s*&\s*a|net\s+(?:income|earnings|loss)|earnings\s+per\s+share|eps|"
        r"interest\s+expenses?|ebitda?)\b|营业(?:总)?收入|营业成本|毛利|净利润|每股收益|研发费用|销售费用|管理费用",
        re.IGNORECASE)),
    ("balance sheet", re.compile(
        r"\b(?:total\s+assets|(?:total|current)\s+liabilities|current\s+assets|inventor(?:y|ies)|"
        r"accounts\s+(?:receivable|payable)|(?:stockholders|shareholders)['’]?\s+equity|working\s+capital|"
        r"quick\s+ratio|current\s+ratio|debt[\s-]+to[\s-]+equity|goodwill|long[\s-]+term\s+debt|retained\s+earnings|"
        r"cash\s+and\s+cash\s+equivalents)\b|总资产|资产总计|负债合计|总负债|流动资产|流动负债|存货|应收账款|应付账款|"
        r"货币资金|商誉", re.IGNORECASE)),
    ("cash flows", re.compile(
        r"\b(?:operating\s+activities|cash\s+flows?\s+from\s+operations|operating\s+cash\s+flows?|capital\s+"
        r"expenditures?|capex|purchases?\s+of\s+property|free\s+cash\s+flows?|depreciation\s+and\s+amortization|"
        r"dividends\s+paid|repurchases?\s+of\s+(?:common\s+)?stock|investing\s+activities|financing\s+activities)\b|"
        r"经营活动|投资活动|筹资活动|资本开支|资本支出|购建固定资产|自由现金流", re.IGNORECASE)),
]


def line_items(text: str) -> frozenset[str]:
    """The line items ``text`` names, lower-cased and singular ("Total operating expenses 28,000" -> {"operating
    expense"}): a statement's row that holds one a question asks for is the row to quote."""
    found = (" ".join(item.lower().split()) for _, pattern in _LINE_ITEMS for item in pattern.findall(text))
    return frozenset(re.sub(r"ies$", "y", item).removesuffix("s") for item in found)


def line_item_statements(question: str) -> frozenset[str]:
    """The kinds of statement that print a line item ``question`` asks for ("total assets": "balance sheet",
    "capital expenditures": "cash flows", "净利润": "income"); empty when it asks for none. Read where the question
    names no statement: the best chunk of each leads (``Settings.line_item_leads``)."""
    return frozenset(kind for kind, pattern in _LINE_ITEMS if pattern.search(question))


def statement_titles(text: str, paged: bool = True) -> list[tuple[int, str]]:
    """(offset, title) of each statement title standing alone on a line of ``text``. An index of the statements
    is left out: titles within ``INDEX_NEIGHBOURS`` lines of each other (page numbers between), or, where ``text``
    is a page (not a whole HTML or DOCX document), its titles of ``INDEX_KINDS`` kinds."""
    lines, offset = [], 0
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.strip().isdigit():  # an index's page numbers stand between its entries
            lines.append((offset + len(line) - len(line.lstrip()), " ".join(line.split()), statement_kind(line)))
        offset += len(line)
    for n, (at, line, kind) in enumerate(lines[:-1]):  # a title wrapped after its "of" ("STATEMENTS OF" / "CASH FLOWS")
        if not kind and line.lower().endswith(" of") and (joined := statement_kind(f"{line} {lines[n + 1][1]}")):
            lines[n], lines[n + 1] = (at, f"{line} {lines[n + 1][1]}", joined), (lines[n + 1][0], lines[n + 1][1], None)
    titles = [(n, at, title, kind) for n, (at, title, kind) in enumerate(lines) if kind]
    if paged and len({kind for *_, kind in titles}) >= INDEX_KINDS:
        return []
    return [(at, title) for n, at, title, _ in titles
            if not any(0 < abs(m - n) <= INDEX_NEIGHBOURS for m, *_ in titles)]
