// Compile keel's own test contracts (contracts/*.sol) with solc-js and print
// {Name: {abi, bytecode}} as JSON. The protocols' contracts are not compiled here: their
// published bytecode comes from their npm packages (node_modules/<package>/...).
const fs = require("fs");
const path = require("path");
const solc = require("solc");
const dir = path.join(__dirname, "contracts");
const sources = {};
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[f] = { content: fs.readFileSync(path.join(dir, f), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: { optimizer: { enabled: true, runs: 200 }, evmVersion: "cancun", outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } } },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const result = {};
for (const file of Object.keys(out.contracts)) {
  for (const [name, c] of Object.entries(out.contracts[file])) {
    result[name] = { abi: c.abi, bytecode: "0x" + c.evm.bytecode.object };
  }
}
process.stdout.write(JSON.stringify(result));
