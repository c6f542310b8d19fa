#!/usr/bin/env python3
"""The original kit's device types: Python woothee 1.10.1 (PyPI), the version the original's
EMR bootstrap installs, over a large and varied set of user agents. The test
`tests/it/woothee_parity.rs` compares ours (`rtb_features::device_type`) with what this writes.

Usage: bench/woothee_parity.py OUT.json
  writes [{"agent": ..., "category": ...}, ...], woothee's category for each distinct agent.

The agents: woothee's published test sets (../shared/data/woothee-testsets), the generator's
catalog, the user agents of the real iPinYou samples (../shared/data/ipinyou-samples), and a few
thousand assembled from the browser, OS and device tokens real bid logs carry (with the suffixes,
padding and placeholders real logs have).
"""
import argparse
import itertools
import json
import pathlib
import re
import sys

import woothee

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


def test_sets():
    for path in sorted((SHARED / "woothee-testsets").glob("*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^- target: (.*)$", line)
            if not m:
                continue
            raw = m.group(1).strip()
            if raw.startswith("'") and raw.endswith("'"):
                yield raw[1:-1].replace("''", "'")
            elif raw.startswith('"') and raw.endswith('"'):
                yield json.loads(raw)
            else:
                yield raw


def generator_agents():
    text = (ROOT / "generator" / "src" / "catalog.rs").read_text(encoding="utf-8")
    block = text[text.index("USER_AGENTS"):text.index("];", text.index("USER_AGENTS"))]
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', block):
        yield m.group(1).replace('\\"', '"').replace("\\\\", "\\")


def sample_agents():
    for path in sorted((SHARED / "ipinyou-samples").glob("season*.txt")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            for field in line.split("\t"):
                if "/" in field and ("(" in field or "Mozilla" in field):
                    yield field


WINDOWS = ["Windows NT 5.0", "Windows NT 5.1", "Windows NT 5.2", "Windows NT 6.0",
           "Windows NT 6.1", "Windows NT 6.2", "Windows NT 6.3", "Windows NT 10.0",
           "Windows 98", "Windows 95", "Windows NT 4.0", "Windows NT", "Windows CE",
           "Windows 9x 4.90", "Windows XP"]
ARCH = ["", "; WOW64", "; Win64; x64"]
MSIE = ["6.0", "7.0", "8.0", "9.0", "10.0"]
CHROME = ["21.0.1180.89", "28.0.1500.95", "30.0.1599.101", "31.0.1650.63"]
FIREFOX = ["3.6.28", "12.0", "21.0", "24.0"]
EXTRAS = ["", "; SV1", "; .NET CLR 2.0.50727", "; QQDownload 714", "; 360SE", "; SE 2.X MetaSr 1.0",
          "; Maxthon 2.0", "; TencentTraveler 4.0", "; MetaSr 1.0", "; Media Center PC 6.0"]
MOBILE = [
    "iPhone; CPU iPhone OS 6_1_3 like Mac OS X", "iPad; CPU OS 6_1 like Mac OS X",
    "iPod touch; CPU iPhone OS 5_1 like Mac OS X", "Linux; U; Android 2.3.6; zh-cn; GT-S5570I Build/GINGERBREAD",
    "Linux; U; Android 4.0.4; zh-cn; MI 1S Build/IMM76D", "Linux; Android 4.1.2; GT-I9300 Build/JZO54K",
    "Linux; U; Android 4.2.1; zh-CN; Lenovo A820t Build/JOP40D", "compatible; MSIE 10.0; Windows Phone 8.0; Trident/6.0; IEMobile/10.0; ARM; Touch; NOKIA; Lumia 920",
    "BlackBerry; U; BlackBerry 9900; en", "Linux; U; Android 4.0.3; ko-kr; SHW-M250S Build/IML74K",
    "Symbian/3; Series60/5.2 NokiaN8-00/012.002", "Linux; Android 4.4.2; Nexus 7 Build/KOT49H",
]
OTHER = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_8_4) AppleWebKit/536.30.1 (KHTML, like Gecko) Version/6.0.5 Safari/536.30.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/30.0.1599.101 Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux i686; rv:24.0) Gecko/20100101 Firefox/24.0",
    "Opera/9.80 (Windows NT 6.1; U; zh-cn) Presto/2.10.229 Version/11.62",
    "Opera/9.80 (Android 2.3.7; Linux; Opera Mobi/46154) Presto/2.11.355 Version/12.10",
    "UCWEB/2.0 (Linux; U; Adr 2.3; zh-CN; MI-ONEPlus) U2/1.0.0 UCBrowser/8.6.0.199 U2/1.0.0 Mobile",
    "JUC (Linux; U; 2.3.7; zh-cn; MB860; 540*960) UCWEB7.9.3.103/139/999",
    "NOKIA5230/UCWEB8.0.3.99/28/999", "Nokia5800 XpressMusic/UC Browser7.5.0.40/50/351",
    "MQQBrowser/4.0/Mozilla/5.0 (Linux; U; Android 4.0.4; zh-cn; HTC T328w Build/IMM76D)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (PLAYSTATION 3; 4.46)", "Mozilla/5.0 (Nintendo 3DS; U; ; ja) Version/1.7498.JP",
    "Mozilla/5.0 (Windows; U; Windows NT 5.1; zh-CN; rv:1.9.2.28) Gecko/20120306 Firefox/3.6.28",
    "Dalvik/1.6.0 (Linux; U; Android 4.0.4; MI 1S MIUI/JLB22.0)", "curl/7.29.0", "Wget/1.14 (linux-gnu)",
    "Java/1.7.0_25", "Apache-HttpClient/4.2.3 (java 1.5)", "Python-urllib/2.7", "-", "", "null",
    "Mozilla/4.0", "Mozilla/5.0", "Mozilla/5.0 (compatible)", "DoCoMo/2.0 P903i(c100;TB;W24H12)",
    "KDDI-CA39 UP.Browser/6.2.0.13.1.5 (GUI) MMP/2.0", "SoftBank/1.0/910T/TJ001/SN000000000000000 Browser/NetFront/3.3",
]


def assembled():
    for win, arch, msie, extra in itertools.product(WINDOWS, ARCH, MSIE, EXTRAS):
        yield f"Mozilla/4.0 (compatible; MSIE {msie}; {win}{arch}{extra})"
    for win, arch in itertools.product(WINDOWS, ARCH):
        yield f"Mozilla/5.0 ({win}{arch}; Trident/7.0; rv:11.0) like Gecko"
        for chrome in CHROME:
            yield f"Mozilla/5.0 ({win}{arch}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome} Safari/537.36"
            yield f"Mozilla/5.0 ({win}{arch}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome} Safari/537.36,gzip(gfe)"
        for firefox in FIREFOX:
            yield f"Mozilla/5.0 ({win}{arch}; rv:{firefox}) Gecko/20100101 Firefox/{firefox}"
        yield f"Mozilla/5.0 ({win}{arch}) AppleWebKit/537.1 (KHTML, like Gecko) Maxthon/4.1.2.4000 Chrome/26.0.1410.43 Safari/537.1"
        yield f"Opera/9.80 ({win}{arch}) Presto/2.12.388 Version/12.16"
    for device in MOBILE:
        yield f"Mozilla/5.0 ({device}) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30"
        yield f"Mozilla/5.0 ({device}) AppleWebKit/536.26 (KHTML, like Gecko) Version/6.0 Mobile/10B329 Safari/8536.25"
        yield f"Mozilla/5.0 ({device}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/30.0.1599.82 Mobile Safari/537.36"
        yield f"Mozilla/5.0 ({device}) AppleWebKit/533.1 (KHTML, like Gecko) Version/4.0 MQQBrowser/4.4 Mobile Safari/533.1"
        yield f"Mozilla/5.0 ({device})"
    yield from OTHER
    # what logs do to agents: padding, suffixes, truncation
    for agent in OTHER[:12]:
        yield " " + agent
        yield agent + " "
        yield agent + ",gzip(gfe)"
        yield agent[: len(agent) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    args = parser.parse_args()
    if woothee.__version__ != "1.10.1":
        sys.exit(f"woothee {woothee.__version__} is installed; the original ran 1.10.1: "
                 "pip install woothee==1.10.1")
    agents = list(dict.fromkeys(
        a for a in itertools.chain(test_sets(), generator_agents(), sample_agents(), assembled())
    ))
    rows = [{"agent": a, "category": woothee.parse(a)["category"]} for a in agents]
    pathlib.Path(args.out).write_text(json.dumps(rows, indent=0), encoding="utf-8")
    print(f"woothee {woothee.__version__}: {len(rows)} distinct agents -> {args.out}")


if __name__ == "__main__":
    main()
