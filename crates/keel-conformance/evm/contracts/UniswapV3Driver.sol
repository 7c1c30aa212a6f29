// SPDX-License-Identifier: MIT OR Apache-2.0
// keel's own test contracts for the Uniswap v3 conformance suite: a plain ERC-20 and a driver
// that mints liquidity, swaps and collects fees on a pool deployed from @uniswap/v3-core's
// published bytecode, paying the pool from its own balance in the callbacks.
pragma solidity 0.8.28;

interface IUniswapV3PoolCalls {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external
        returns (uint256 amount0, uint256 amount1);
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96, bytes calldata data)
        external
        returns (int256 amount0, int256 amount1);
    function burn(int24 tickLower, int24 tickUpper, uint128 amount) external returns (uint256 amount0, uint256 amount1);
    function collect(address recipient, int24 tickLower, int24 tickUpper, uint128 amount0Requested, uint128 amount1Requested)
        external
        returns (uint128 amount0, uint128 amount1);
}

/// A minimal ERC-20 with an open mint (test only).
contract TestToken {
    string public name;
    string public symbol;
    uint8 public decimals;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    constructor(string memory symbol_, uint8 decimals_) {
        name = symbol_;
        symbol = symbol_;
        decimals = decimals_;
    }

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        totalSupply += amount;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        allowance[from][msg.sender] -= amount;
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        return true;
    }
}

/// Mints, swaps and collects on one pool; pays what the pool asks from its own balance.
contract UniswapV3Driver {
    IUniswapV3PoolCalls public pool;

    constructor(IUniswapV3PoolCalls pool_) {
        pool = pool_;
    }

    function mint(int24 tickLower, int24 tickUpper, uint128 amount) external returns (uint256, uint256) {
        return pool.mint(address(this), tickLower, tickUpper, amount, "");
    }

    function swap(bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96) external returns (int256, int256) {
        return pool.swap(address(this), zeroForOne, amountSpecified, sqrtPriceLimitX96, "");
    }

    /// Poke a position (burn of zero liquidity) and collect everything it is owed.
    function collectFees(int24 tickLower, int24 tickUpper) external returns (uint128, uint128) {
        pool.burn(tickLower, tickUpper, 0);
        return pool.collect(address(this), tickLower, tickUpper, type(uint128).max, type(uint128).max);
    }

    function uniswapV3MintCallback(uint256 amount0, uint256 amount1, bytes calldata) external {
        require(msg.sender == address(pool), "not the pool");
        pay(amount0, amount1);
    }

    function uniswapV3SwapCallback(int256 amount0, int256 amount1, bytes calldata) external {
        require(msg.sender == address(pool), "not the pool");
        pay(amount0 > 0 ? uint256(amount0) : 0, amount1 > 0 ? uint256(amount1) : 0);
    }

    function pay(uint256 amount0, uint256 amount1) internal {
        if (amount0 > 0) TestToken(pool.token0()).transfer(msg.sender, amount0);
        if (amount1 > 0) TestToken(pool.token1()).transfer(msg.sender, amount1);
    }
}
