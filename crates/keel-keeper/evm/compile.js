// Compile contracts/MockStrategies.sol with solc-js and print {Name: {abi, bytecode}} as JSON.
const fs = require("fs");
const path = require("path");
const solc = require("solc");
const source = fs.readFileSync(path.join(__dirname, "contracts", "MockStrategies.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "MockStrategies.sol": { content: source } },
  settings: { optimizer: { enabled: true, runs: 200 }, evmVersion: "cancun", outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } } },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const result = {};
for (const [name, c] of Object.entries(out.contracts["MockStrategies.sol"])) {
  result[name] = { abi: c.abi, bytecode: "0x" + c.evm.bytecode.object };
}
process.stdout.write(JSON.stringify(result));
