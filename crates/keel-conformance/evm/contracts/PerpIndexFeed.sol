// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

// The index price feed a Perp v2 `BaseToken` reads (the IPriceFeedDispatcher interface of
// the perp-oracle-contract package), for keel's conformance tests: 18 decimals, one price set
// by the test, the same for every TWAP interval (test only).
contract PerpIndexFeed {
    uint256 public price;

    function setPrice(uint256 price_) external {
        price = price_;
    }

    function decimals() external pure returns (uint8) {
        return 18;
    }

    function getDispatchedPrice(uint256) external view returns (uint256) {
        return price;
    }

    function getPrice(uint256) external view returns (uint256) {
        return price;
    }

    function dispatchPrice(uint256) external {}
}
