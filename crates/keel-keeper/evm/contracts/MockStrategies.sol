// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// A state machine with the lending FLI strategy extension's keeper interface (`fli.md` §11–§16):
/// tests set what `shouldRebalance` returns and the keeper calls check it, with the reference's
/// revert strings. Like the mock extension the reference keeper's tests use.
contract MockFliStrategy {
    string[] public names;
    uint8[] public states;
    uint256[] public chunks;
    uint256 public leverage = 2e18;
    uint256 public incentive;
    uint256 public minBound = 1.8e18;
    uint256 public maxBound = 2.2e18;
    string public revertReason;

    event Called(address caller, string fn, string exchange);

    constructor(string[] memory _names) payable {
        names = _names;
        states = new uint8[](_names.length);
        chunks = new uint256[](_names.length);
    }

    receive() external payable {}

    function setStates(uint8[] calldata s) external { require(s.length == names.length, "length"); states = s; }
    function setChunks(uint256[] calldata c) external { require(c.length == names.length, "length"); chunks = c; }
    function setLeverage(uint256 l) external { leverage = l; }
    function setIncentive(uint256 i) external { incentive = i; }
    function setRevert(string calldata r) external { revertReason = r; }

    function shouldRebalance() external view returns (string[] memory, uint8[] memory) {
        return (names, states);
    }

    function shouldRebalanceWithBounds(uint256 mn, uint256 mx) external view returns (string[] memory, uint8[] memory) {
        require(mn <= minBound && mx >= maxBound, "Custom bounds must be valid");
        return (names, states);
    }

    function getChunkRebalanceNotional(string[] calldata n) external view returns (uint256[] memory sizes, address sellAsset, address buyAsset) {
        sizes = new uint256[](n.length);
        for (uint256 i = 0; i < n.length; i++) sizes[i] = chunks[index(n[i])];
        return (sizes, address(0), address(0));
    }

    function getCurrentEtherIncentive() external view returns (uint256) { return incentive; }
    function getCurrentLeverageRatio() external view returns (uint256) { return leverage; }

    function rebalance(string calldata e) external { act(e, 1, "rebalance"); }
    function iterateRebalance(string calldata e) external { act(e, 2, "iterateRebalance"); }

    function ripcord(string calldata e) external {
        uint256 i = index(e);
        require(states[i] == 3, "Must be above incentivized leverage ratio");
        for (uint256 j = 0; j < states.length; j++) states[j] = 0;
        emit Called(msg.sender, "ripcord", e);
        uint256 r = incentive;
        incentive = 0;
        if (r > 0 && address(this).balance >= r) payable(msg.sender).transfer(r);
    }

    function act(string calldata e, uint8 want, string memory fn) internal {
        if (bytes(revertReason).length > 0) revert(revertReason);
        uint256 i = index(e);
        require(states[i] == want, "Cooldown not elapsed or not valid leverage ratio");
        // a trade on one exchange moves the leverage ratio for all of them
        for (uint256 j = 0; j < states.length; j++) states[j] = 0;
        emit Called(msg.sender, fn, e);
    }

    function index(string memory e) internal view returns (uint256) {
        for (uint256 i = 0; i < names.length; i++) {
            if (keccak256(bytes(names[i])) == keccak256(bytes(e))) return i;
        }
        revert("Must be valid exchange");
    }
}

/// The PerpV2 strategy extension's keeper interface (`perp.md`): one enum, signed ratios.
contract MockPerpStrategy {
    uint8 public state;
    int256 public leverage = -2e18;
    uint256 public incentive;

    event Called(address caller, string fn);

    constructor() payable {}

    function setState(uint8 s) external { state = s; }
    function setLeverage(int256 l) external { leverage = l; }

    function shouldRebalance() external view returns (uint8) { return state; }

    function shouldRebalanceWithBounds(int256 mn, int256 mx) external view returns (uint8) {
        require(mn >= -1.8e18 && mx <= -2.2e18, "Custom bounds must be valid");
        return state;
    }

    function getCurrentEtherIncentive() external view returns (uint256) { return incentive; }
    function getCurrentLeverageRatio() external view returns (int256) { return leverage; }

    function rebalance() external { require(state == 1, "Cooldown not elapsed or not valid leverage ratio"); state = 0; emit Called(msg.sender, "rebalance"); }
    function iterateRebalance() external { require(state == 2, "Cooldown not elapsed or not valid leverage ratio"); state = 0; emit Called(msg.sender, "iterateRebalance"); }
    function ripcord() external { require(state == 3, "Must be above incentivized leverage ratio"); state = 0; emit Called(msg.sender, "ripcord"); }
}
