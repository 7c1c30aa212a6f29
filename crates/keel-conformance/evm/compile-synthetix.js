// Compile Synthetix contracts from the `synthetix` package's own sources
// (node_modules/synthetix/contracts, with openzeppelin-solidity 2.3.0 as Synthetix pins it) with
// solc 0.5.16, optimizer 200 runs, istanbul: the settings its deployment records. The Perps V2
// suite runs the published creation code of the market's contracts
// (publish/deployed/mainnet-ovm/deployment.json); it compiles only the three contracts around
// them whose recorded code is runtime code built by the pre-2021 OVM compiler (AddressResolver,
// FlexibleStorage, SafeDecimalMath), which a plain EVM cannot run. Usage: node
// compile-synthetix.js Name...; prints {Name: {bytecode, linkReferences}}.
const fs = require("fs");
const path = require("path");
const solc = require("solc-0.5.16");
const names = process.argv.slice(2);
const root = path.join(__dirname, "node_modules");
const sources = {};
for (const n of names) {
  sources[`contracts/${n}.sol`] = { content: fs.readFileSync(path.join(root, "synthetix/contracts", `${n}.sol`), "utf8") };
}
function findImports(p) {
  const file = p.startsWith("contracts/") ? path.join(root, "synthetix", p) : path.join(root, p);
  try {
    return { contents: fs.readFileSync(file, "utf8") };
  } catch (e) {
    return { error: `${p}: ${e.message}` };
  }
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "istanbul",
    outputSelection: { "*": { "*": ["evm.bytecode.object", "evm.bytecode.linkReferences"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input), findImports));
const errors = (out.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const result = {};
for (const n of names) {
  const c = out.contracts[`contracts/${n}.sol`][n];
  result[n] = { bytecode: c.evm.bytecode.object, linkReferences: c.evm.bytecode.linkReferences };
}
process.stdout.write(JSON.stringify(result));
