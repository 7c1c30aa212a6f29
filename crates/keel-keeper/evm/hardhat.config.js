// The local node keel-keeper's tests run against: `hardhat node` on loopback, chain 31337,
// automining, London fee market. Nothing here reaches the network.
module.exports = {
  solidity: "0.8.28",
  networks: { hardhat: { chainId: 31337, initialBaseFeePerGas: 1000000000, mining: { auto: true } } },
};
