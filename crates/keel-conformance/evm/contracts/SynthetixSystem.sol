// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// keel's stand-in for the parts of Synthetix around a Perps V2 market, so the market's own
/// published contracts (PerpsV2Market, its fragments, state, proxy and settings) can run alone.
/// It answers, under the resolver names the market looks up:
/// - `ExchangeRates` / `PerpsV2ExchangeRate`: one settable price (on-chain and off-chain alike,
///   published at the block's time), invalid only when zero;
/// - `SystemStatus`: everything active;
/// - `Exchanger`: no dynamic fee;
/// - `FuturesMarketManager`: sUSD burnt on deposit and issued on withdrawal or as keeper fees,
///   and the fee pool, kept as totals so a suite can compare them; `marketForKey` names the
///   market for the settings contract.
contract SynthetixSystem {
    uint256 public price;
    uint256 public roundId;
    address public market;
    mapping(address => uint256) public issued;
    mapping(address => uint256) public burnt;
    uint256 public feesPaid;

    function setPrice(uint256 p) external {
        price = p;
        roundId += 1;
    }

    function setMarket(address m) external {
        market = m;
    }

    // ExchangeRates
    function rateAndInvalid(bytes32) external view returns (uint256, bool) {
        return (price, price == 0);
    }

    function rateWithSafetyChecks(bytes32) external view returns (uint256, bool, bool) {
        return (price, false, price == 0);
    }

    function getCurrentRoundId(bytes32) external view returns (uint256) {
        return roundId;
    }

    // PerpsV2ExchangeRate (Pyth): the same price, published now
    function updatePythPrice(address, bytes[] calldata) external payable {}

    function resolveAndGetPrice(bytes32, uint256) external view returns (uint256, uint256) {
        return (price, block.timestamp);
    }

    // SystemStatus
    function requireFuturesMarketActive(bytes32) external pure {}

    function requireSynthActive(bytes32) external pure {}

    function synthSuspended(bytes32) external pure returns (bool) {
        return false;
    }

    // Exchanger
    function dynamicFeeRateForExchange(bytes32, bytes32) external pure returns (uint256, bool) {
        return (0, false);
    }

    // FuturesMarketManager
    function issueSUSD(address account, uint256 amount) external {
        issued[account] += amount;
    }

    function burnSUSD(address account, uint256 amount) external returns (uint256) {
        burnt[account] += amount;
        return amount;
    }

    function payFee(uint256 amount) external {
        feesPaid += amount;
    }

    function isEndorsed(address) external pure returns (bool) {
        return false;
    }

    function marketForKey(bytes32) external view returns (address) {
        return market;
    }
}
