// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

// A Chainlink aggregator as the FLI strategy extension reads it (`latestAnswer`, 8 decimals),
// for keel's conformance tests: one answer set by the test (test only).
contract ChainlinkFeed {
    int256 public latestAnswer;

    function setAnswer(int256 answer) external {
        latestAnswer = answer;
    }

    function decimals() external pure returns (uint8) {
        return 8;
    }
}
