#!/usr/bin/env python3
"""Checks that every target's dependencies in Package.swift are exactly the modules its sources
import (no missing and no unused dependency). `--fix` rewrites the lists.

Run by .ci/run; `python3 .ci/dependencies.py --fix` after adding or removing an import."""
import os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Modules of the platform and toolchain: imported, never declared.
SYSTEM = {"Foundation", "FoundationNetworking", "FoundationEssentials", "Glibc", "Darwin", "Musl", "Testing",
          "Synchronization", "XCTest", "Dispatch", "_Concurrency"}
# Product modules → their package.
PRODUCTS = {
    "Logging": "swift-log", "Metrics": "swift-metrics", "CoreMetrics": "swift-metrics",
    "Prometheus": "swift-prometheus", "ServiceLifecycle": "swift-service-lifecycle",
    "UnixSignals": "swift-service-lifecycle", "NIOCore": "swift-nio", "NIOPosix": "swift-nio",
    "NIOConcurrencyHelpers": "swift-nio", "NIOWebSocket": "swift-nio", "NIOHTTP1": "swift-nio",
    "NIOEmbedded": "swift-nio", "NIOFoundationCompat": "swift-nio", "NIOTLS": "swift-nio", "Crypto": "swift-crypto",
    "W3CTraceContext": "swift-w3c-trace-context", "Hummingbird": "hummingbird",
    "HummingbirdTesting": "hummingbird", "HummingbirdCore": "hummingbird", "HummingbirdWebSocket": "hummingbird-websocket",
    "HummingbirdWSClient": "hummingbird-websocket", "JWTKit": "jwt-kit", "HTTPTypes": "swift-http-types",
    "Histogram": "hdrhistogram-swift", "NIOSSL": "swift-nio-ssl", "MCP": "swift-sdk",
    "AsyncHTTPClient": "async-http-client",
}

# The layering of docs/ARCHITECTURE.md: the targets of this package each library may use.
ALLOWED = {
    "AIIMJSON": set(), "AIIMConfiguration": set(),
    "AIIMProtocol": {"AIIMJSON"},
    "AIIMRedis": {"CHiredis", "AIIMProtocol", "AIIMJSON", "AIIMConfiguration"},
    "AIIMPostgres": {"CLibpq", "AIIMJSON", "AIIMConfiguration"},
    "AIIMServiceKit": {"AIIMProtocol", "AIIMJSON", "AIIMConfiguration"},
    "AIIMBackendKit": {"AIIMServiceKit", "AIIMRedis", "AIIMPostgres", "AIIMProtocol", "AIIMJSON", "AIIMConfiguration"},
    "AIIMS3": {"CCurlShim"},
    "GatewayCore": {"AIIMServiceKit", "AIIMRedis", "AIIMProtocol", "AIIMJSON", "AIIMConfiguration"},
    "MessagingCore": {"AIIMBackendKit", "AIIMServiceKit", "AIIMRedis", "AIIMPostgres", "AIIMProtocol", "AIIMJSON", "AIIMConfiguration"},
    "CallsCore": {"AIIMBackendKit", "AIIMServiceKit", "AIIMRedis", "AIIMPostgres", "AIIMProtocol", "AIIMJSON", "AIIMConfiguration"},
    "MediaCore": {"AIIMBackendKit", "AIIMServiceKit", "AIIMRedis", "AIIMPostgres", "AIIMProtocol", "AIIMJSON", "AIIMConfiguration", "AIIMS3"},
}

TARGET = re.compile(r'\.(target|executableTarget|testTarget)\(\s*name:\s*"([^"]+)"', re.S)


def blocks(text):
    """(start, end, kind, name) of each target call, by bracket matching."""
    out = []
    for m in TARGET.finditer(text):
        depth, i = 0, m.start() + len(m.group(1)) + 1
        while True:
            c = text[i]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        out.append((m.start(), i + 1, m.group(1), m.group(2)))
    return out


def imports(path):
    mods = set()
    for dirpath, _, files in os.walk(os.path.join(ROOT, path)):
        for f in files:
            if not f.endswith(".swift"):
                continue
            for line in open(os.path.join(dirpath, f), encoding="utf-8"):
                m = re.match(r"\s*(?:@testable\s+|@preconcurrency\s+|internal\s+|public\s+|package\s+|private\s+)*import\s+(?:struct\s+|enum\s+|class\s+|func\s+)?([A-Za-z_][A-Za-z0-9_]*)", line)
                if m:
                    mods.add(m.group(1))
    return mods - SYSTEM


def render(dep):
    if dep in PRODUCTS:
        return f'.product(name: "{dep}", package: "{PRODUCTS[dep]}")'
    return f'"{dep}"'


def main():
    fix = "--fix" in sys.argv
    pkg_path = os.path.join(ROOT, "Package.swift")
    text = open(pkg_path, encoding="utf-8").read()
    local = {name for _, _, _, name in blocks(text)} | set(re.findall(r'\.systemLibrary\(\s*name:\s*"([^"]+)"', text))
    problems, edits = [], []
    for start, end, kind, name in blocks(text):
        body = text[start:end]
        path = re.search(r'path:\s*"([^"]+)"', body)
        if not path:
            problems.append(f"{name}: no path")
            continue
        if not any(f.endswith(".swift") for _, _, fs in os.walk(os.path.join(ROOT, path.group(1))) for f in fs):
            continue  # a C target: its dependencies are headers, not imports
        wanted = imports(path.group(1))
        unknown = {m for m in wanted if m not in local and m not in PRODUCTS}
        for m in sorted(unknown):
            problems.append(f"{name}: imports {m}, which is neither a target of this package nor a known product")
        if name in ALLOWED:
            for m in sorted((wanted & local) - ALLOWED[name]):
                problems.append(f"{name}: may not import {m} (docs/ARCHITECTURE.md, modules and what each may import)")
        dm = re.search(r"dependencies:\s*\[(.*?)\]\s*,\s*\n?\s*(?=path:)", body, re.S)
        declared = set()
        if dm:
            declared = set(re.findall(r'\.product\(name:\s*"([^"]+)"', dm.group(1))) | set(re.findall(r'(?<![\w:])"([^"]+)"', re.sub(r'\.product\([^)]*\)', "", dm.group(1))))
        missing, unused = wanted - declared - unknown, declared - wanted
        if missing or unused:
            problems.append(f"{name}: missing {sorted(missing)} unused {sorted(unused)}")
            deps = sorted(wanted - unknown, key=lambda d: (d in PRODUCTS, d))
            if dm:
                indent = " " * 16
                new = ", ".join(render(d) for d in deps) if len(deps) <= 3 else ("\n" + indent) + (",\n" + indent).join(render(d) for d in deps) + ",\n" + " " * 12
                edits.append((start + dm.start(1), start + dm.end(1), new))
            else:
                problems.append(f"{name}: add a dependencies: [...] list by hand")
    if fix:
        for s, e, new in sorted(edits, reverse=True):
            text = text[:s] + new + text[e:]
        open(pkg_path, "w", encoding="utf-8").write(text)
    for p in problems:
        print(p)
    if problems and not fix:
        print("Package.swift dependencies do not match the imports; run python3 .ci/dependencies.py --fix")
        sys.exit(1)


main()
