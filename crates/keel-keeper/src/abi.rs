//! The strategy contracts' interfaces (`fli.md` §11–§16, `perp.md`), as the keeper calls them.

use alloy_sol_types::sol;

sol! {
    /// The lending FLI strategy extension (several exchanges by name).
    interface IFliStrategy {
        function shouldRebalance() external view returns (string[] memory, uint8[] memory);
        function shouldRebalanceWithBounds(uint256 customMinLeverageRatio, uint256 customMaxLeverageRatio) external view returns (string[] memory, uint8[] memory);
        function getChunkRebalanceNotional(string[] calldata exchangeNames) external view returns (uint256[] memory sizes, address sellAsset, address buyAsset);
        function getCurrentEtherIncentive() external view returns (uint256);
        function getCurrentLeverageRatio() external view returns (uint256);
        function rebalance(string memory exchangeName) external;
        function iterateRebalance(string memory exchangeName) external;
        function ripcord(string memory exchangeName) external;
    }

    /// The PerpV2 strategy extension (one venue; signed leverage ratios).
    interface IPerpStrategy {
        function shouldRebalance() external view returns (uint8);
        function shouldRebalanceWithBounds(int256 customMinLeverageRatio, int256 customMaxLeverageRatio) external view returns (uint8);
        function getCurrentEtherIncentive() external view returns (uint256);
        function getCurrentLeverageRatio() external view returns (int256);
        function rebalance() external;
        function iterateRebalance() external;
        function ripcord() external;
    }
}

/// The revert reason in `data` (an `Error(string)` or a panic), if it decodes.
pub fn revert_reason(data: &[u8]) -> Option<String> {
    alloy_sol_types::decode_revert_reason(data).map(|r| r.strip_prefix("revert: ").map(str::to_string).unwrap_or(r))
}
