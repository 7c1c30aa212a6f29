//! The Uniswap v3 calls the Uniswap and Set suites make: `@uniswap/v3-core`'s factory and pool,
//! and keel's `UniswapV3Driver` (`evm/contracts/UniswapV3Driver.sol`).
#![allow(dead_code)] // each suite uses a part

use alloy_sol_types::sol;

sol! {
    interface IFactory {
        function createPool(address tokenA, address tokenB, uint24 fee) external returns (address pool);
    }
    interface IPool {
        function initialize(uint160 sqrtPriceX96) external;
        function slot0() external view returns (uint160 sqrtPriceX96, int24 tick, uint16 observationIndex, uint16 observationCardinality, uint16 observationCardinalityNext, uint8 feeProtocol, bool unlocked);
        function liquidity() external view returns (uint128);
    }
    interface IDriver {
        function mint(int24 tickLower, int24 tickUpper, uint128 amount) external returns (uint256, uint256);
        function swap(bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96) external returns (int256, int256);
        function collectFees(int24 tickLower, int24 tickUpper) external returns (uint128, uint128);
    }
}
